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
 * node). A command answered {@code ASK} (its slot is being migrated) is sent again to the
 * importing node after {@code ASKING}. A batch answered with another redirect ({@code
 * MOVED}, {@code TRYAGAIN}, {@code CLUSTERDOWN}) is sent again whole after reloading the
 * map, until {@code giveUpMs}: every command the tile sink sends is idempotent. A command's key is its second argument,
 * or the fourth for {@code EVAL} (one declared key).
 */
final class RedisClusterPipeline implements RedisCommands {

  static final int SLOTS = 16384;

  private final String scheme;
  private final String userInfo;
  private final String query;
  private final List<String> seeds = new ArrayList<>();
  private final Map<String, RedisPipeline> nodes = new HashMap<>();
  private final String[] owner = new String[SLOTS];
  private final List<String[]> queued = new ArrayList<>();

  RedisClusterPipeline(String url) {
    URI uri = RedisPipeline.parse(url);
    // The same URL rules (scheme, auth, TLS, no SELECT beyond db 0).
    query = new RedisPipeline(url).query();
    String path = uri.getPath() == null ? "" : uri.getPath().replace("/", "");
    if (!path.isEmpty() && !"0".equals(path)) {
      throw new IllegalArgumentException(
          "LFP_REDIS_URL " + RedisPipeline.redact(url) + ": Redis Cluster has database 0 only");
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
        boolean again = error.redirected() || error.retryable();
        if (!again || System.currentTimeMillis() + backoffMs > deadline) {
          queued.clear();
          throw error;
        }
        // A master loading its file after a restart answers LOADING: the same map, later.
        if (error.redirected()) {
          java.util.Arrays.fill(owner, null);
        }
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
      String node = owner[slot(keyOf(args))];
      if (node == null) {
        throw new IOException("no master serves the slot of " + keyOf(args));
      }
      byNode.computeIfAbsent(node, n -> new ArrayList<>()).add(args);
    }
    List<String[]> asked = new ArrayList<>();
    List<String> askedAt = new ArrayList<>();
    exchange(byNode, (args, error) -> {
      if (!error.reply.startsWith("ASK ")) {
        return false;
      }
      asked.add(args);
      askedAt.add(error.reply.substring(error.reply.lastIndexOf(' ') + 1));
      return true;
    });
    if (asked.isEmpty()) {
      return;
    }
    // A slot being migrated: its master answers ASK for keys already moved, and the
    // importing node takes a command only right after ASKING. The map stays as it is
    // until the migration ends (then MOVED reloads it).
    Map<String, List<String[]>> byTarget = new LinkedHashMap<>();
    for (int i = 0; i < asked.size(); i++) {
      List<String[]> commands = byTarget.computeIfAbsent(askedAt.get(i), n -> new ArrayList<>());
      commands.add(new String[] {"ASKING"});
      commands.add(asked.get(i));
    }
    exchange(byTarget, (args, error) -> false);
  }

  /** Handles one command's error reply; true if handled, false to throw it. */
  private interface ErrorReply {
    boolean handle(String[] args, RedisPipeline.RedisError error);
  }

  /**
   * Writes every node's commands before reading any node's replies (one round trip's
   * time for the batch, whatever the number of masters), then reads them all; the first
   * error reply {@code onError} does not handle is thrown.
   */
  private void exchange(Map<String, List<String[]>> byNode, ErrorReply onError)
      throws IOException {
    Map<String, RedisPipeline> used = new LinkedHashMap<>();
    for (Map.Entry<String, List<String[]>> entry : byNode.entrySet()) {
      RedisPipeline pipe = node(entry.getKey());
      used.put(entry.getKey(), pipe);
      for (String[] args : entry.getValue()) {
        pipe.command(args);
      }
    }
    try {
      for (RedisPipeline pipe : used.values()) {
        pipe.transmit();
      }
      IOException failure = null;
      for (Map.Entry<String, RedisPipeline> entry : used.entrySet()) {
        try {
          List<RedisPipeline.RedisError> errors = entry.getValue().receiveEach();
          List<String[]> sent = byNode.get(entry.getKey());
          for (int i = 0; i < errors.size(); i++) {
            RedisPipeline.RedisError error = errors.get(i);
            if (error != null && !onError.handle(sent.get(i), error) && failure == null) {
              failure = error;
            }
          }
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

  private static String keyOf(String[] args) {
    return "EVAL".equals(args[0]) ? args[3] : args[1];
  }

  private RedisPipeline node(String address) {
    return nodes.computeIfAbsent(
        address,
        a -> new RedisPipeline(
            scheme + "://" + (userInfo == null ? "" : userInfo + "@") + inUrl(a) + "/0" + query));
  }

  /** {@code host:port} as a URL's authority: an IPv6 host goes in brackets. */
  static String inUrl(String address) {
    int colon = address.lastIndexOf(':');
    String host = address.substring(0, colon);
    boolean ipv6 = host.indexOf(':') >= 0 && !host.startsWith("[");
    return (ipv6 ? "[" + host + "]" : host) + address.substring(colon);
  }

  private void loadSlots() throws IOException {
    IOException last = null;
    List<String> candidates = new ArrayList<>(seeds);
    candidates.addAll(nodes.keySet());
    for (String address : candidates) {
      try {
        Object reply = node(address).call("CLUSTER", "SLOTS");
        if (!(reply instanceof List)) {
          throw new IOException("CLUSTER SLOTS of " + address + " answered " + reply);
        }
        fill((List<?>) reply);
        return;
      } catch (IOException error) {
        last = error;
      } catch (ClassCastException | IndexOutOfBoundsException error) {
        last = new IOException("unexpected CLUSTER SLOTS reply of " + address, error);
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
