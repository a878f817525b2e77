package lfp.speed;

import java.io.IOException;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Pipelined commands to a Redis Cluster: each command goes to the master of its key's hash
 * slot, over one {@link RedisPipeline} per master, all sent before any reply is read.
 *
 * <p>The slot map comes from {@code CLUSTER SLOTS} of the seed node (then of any known
 * node). A batch answered with a redirect ({@code MOVED}, {@code ASK}, {@code TRYAGAIN},
 * {@code CLUSTERDOWN}) is sent again whole after reloading the map, until {@code giveUpMs}:
 * every command the tile sink sends is idempotent. A command's key is its second argument,
 * or the fourth for {@code EVAL} (one declared key).
 */
final class RedisClusterPipeline implements RedisCommands {

  static final int SLOTS = 16384;

  private final String scheme;
  private final String userInfo;
  private final List<String> seeds = new ArrayList<>();
  private final Map<String, RedisPipeline> nodes = new HashMap<>();
  private final String[] owner = new String[SLOTS];
  private final List<String[]> queued = new ArrayList<>();

  RedisClusterPipeline(String url) {
    URI uri = URI.create(url);
    new RedisPipeline(url); // the same URL rules (scheme, auth, no SELECT beyond db 0)
    String path = uri.getPath() == null ? "" : uri.getPath().replace("/", "");
    if (!path.isEmpty() && !"0".equals(path)) {
      throw new IllegalArgumentException(
          "LFP_REDIS_URL " + url + ": Redis Cluster has database 0 only");
    }
    scheme = uri.getScheme();
    userInfo = uri.getRawUserInfo();
    seeds.add((uri.getHost() == null ? "localhost" : uri.getHost())
        + ":" + (uri.getPort() < 0 ? 6379 : uri.getPort()));
  }

  /** Queues one command (sent by {@link #sync}). */
  @Override
  public void command(String... args) {
    queued.add(args);
  }

  int pending() {
    return queued.size();
  }

  /** Sends every queued command to its slot's master, then reads every reply. */
  @Override
  public void sync(long giveUpMs) throws IOException, InterruptedException {
    if (queued.isEmpty()) {
      return;
    }
    long deadline = System.currentTimeMillis() + giveUpMs;
    long backoffMs = 100;
    while (true) {
      try {
        if (owner[0] == null) {
          loadSlots();
        }
        send();
        queued.clear();
        return;
      } catch (RedisPipeline.RedisError error) {
        if (!error.redirected() || System.currentTimeMillis() + backoffMs > deadline) {
          queued.clear();
          throw error;
        }
        java.util.Arrays.fill(owner, null);
      } catch (IOException error) {
        java.util.Arrays.fill(owner, null);
        if (System.currentTimeMillis() + backoffMs > deadline) {
          throw new IOException(
              "Redis Cluster (LFP_REDIS_URL " + seeds.get(0) + ") did not take the speed "
                  + "job's writes: " + error.getMessage(), error);
        }
      }
      Thread.sleep(backoffMs);
      backoffMs = Math.min(backoffMs * 2, 2000);
    }
  }

  private void send() throws IOException {
    Map<String, List<String[]>> byNode = new LinkedHashMap<>();
    for (String[] args : queued) {
      String key = "EVAL".equals(args[0]) ? args[3] : args[1];
      String node = owner[slot(key)];
      if (node == null) {
        throw new IOException("no master serves the slot of " + key);
      }
      byNode.computeIfAbsent(node, n -> new ArrayList<>()).add(args);
    }
    Map<String, RedisPipeline> used = new LinkedHashMap<>();
    for (Map.Entry<String, List<String[]>> entry : byNode.entrySet()) {
      RedisPipeline pipe = node(entry.getKey());
      used.put(entry.getKey(), pipe);
      for (String[] args : entry.getValue()) {
        pipe.command(args);
      }
    }
    // Every node's commands are written before any node's replies are awaited: one round
    // trip's time for the batch, whatever the number of masters.
    try {
      for (RedisPipeline pipe : used.values()) {
        pipe.transmit();
      }
      IOException failure = null;
      for (RedisPipeline pipe : used.values()) {
        try {
          pipe.receive();
        } catch (IOException error) {
          failure = failure == null ? error : failure;
        }
      }
      if (failure != null) {
        throw failure;
      }
    } catch (IOException error) {
      for (RedisPipeline pipe : used.values()) {
        pipe.discard();
      }
      throw error;
    }
  }

  private RedisPipeline node(String address) {
    return nodes.computeIfAbsent(
        address,
        a -> new RedisPipeline(
            scheme + "://" + (userInfo == null ? "" : userInfo + "@") + a + "/0"));
  }

  private void loadSlots() throws IOException {
    IOException last = null;
    List<String> candidates = new ArrayList<>(seeds);
    candidates.addAll(nodes.keySet());
    for (String address : candidates) {
      try {
        Object reply = node(address).call("CLUSTER", "SLOTS");
        fill((List<?>) reply);
        return;
      } catch (IOException error) {
        last = error;
      }
    }
    throw last != null ? last : new IOException("no Redis Cluster node to ask for slots");
  }

  private void fill(List<?> ranges) throws IOException {
    for (Object item : ranges) {
      List<?> range = (List<?>) item;
      int start = ((Long) range.get(0)).intValue();
      int end = ((Long) range.get(1)).intValue();
      List<?> master = (List<?>) range.get(2);
      String address = master.get(0) + ":" + master.get(1);
      for (int slot = start; slot <= end; slot++) {
        owner[slot] = address;
      }
    }
    for (String address : owner) {
      if (address == null) {
        throw new IOException("the Redis Cluster does not cover every slot yet");
      }
    }
    for (String address : new ArrayList<>(java.util.Arrays.asList(owner))) {
      if (!seeds.contains(address)) {
        seeds.add(address);
      }
    }
  }

  /** The key's hash slot: CRC16 (XMODEM) of its hash tag, or of the whole key. */
  static int slot(String key) {
    byte[] bytes = key.getBytes(StandardCharsets.UTF_8);
    int from = 0;
    int to = bytes.length;
    int open = indexOf(bytes, (byte) '{', 0);
    if (open >= 0) {
      int close = indexOf(bytes, (byte) '}', open + 1);
      if (close > open + 1) {
        from = open + 1;
        to = close;
      }
    }
    return crc16(bytes, from, to) % SLOTS;
  }

  private static int indexOf(byte[] bytes, byte wanted, int from) {
    for (int i = from; i < bytes.length; i++) {
      if (bytes[i] == wanted) {
        return i;
      }
    }
    return -1;
  }

  static int crc16(byte[] bytes, int from, int to) {
    int crc = 0;
    for (int i = from; i < to; i++) {
      crc ^= (bytes[i] & 0xff) << 8;
      for (int bit = 0; bit < 8; bit++) {
        crc = (crc & 0x8000) != 0 ? (crc << 1) ^ 0x1021 : crc << 1;
        crc &= 0xffff;
      }
    }
    return crc;
  }

  @Override
  public void close() {
    for (RedisPipeline pipe : nodes.values()) {
      pipe.close();
    }
  }
}
