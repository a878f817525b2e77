package lfp.speed;

import java.io.IOException;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.Map;
import org.apache.flink.api.common.operators.ProcessingTimeService;
import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.api.connector.sink2.WriterInitContext;
import org.apache.flink.types.Row;
import org.apache.flink.types.RowKind;

/**
 * A feature group's speed tiles -> Redis, from the JVM: the tile query's upserts
 * {@code (k0..kn, tile, raw0..rawm, max_event_time)} become {@code HSET
 * <prefix>:st:<group>:{<entity>} <tile> <partials JSON>} (online_store/keys.py), each key's
 * TTL, then the group's watermark (a max), as speed_layer/sink.py describes. On Redis
 * Cluster the tiles go to their slots' masters, and the watermark is sent only once every
 * master acknowledged them.
 *
 * <p>Updates are coalesced per (entity, tile) and written every {@code flushMs} in one
 * pipeline, and before every checkpoint completes ({@link SinkWriter#flush}), so a restored
 * job never lacks a write its checkpoint counted. Tiles are upserted whole: a replay writes
 * the same values. Each raw column is finished into the algebra's partial here ({@link
 * #partial}), as speed_layer/sink.py's to_partial does it in Python: a parity test holds
 * the two together.
 */
public class TileSink implements Sink<Row> {

  private static final long serialVersionUID = 1L;

  /** Keeps the newest event time written per group (a max, so replays never lower it). */
  static final String MAX_WATERMARK =
      "local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')\n"
          + "if tonumber(ARGV[2]) > current then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end\n"
          + "return 1\n";

  private final String redisUrl;
  private final boolean cluster;
  private final String tileKeyPrefix;
  private final String tileKeySuffix;
  private final String watermarkKey;
  private final String group;
  private final long ttlS;
  private final int joinKeys;
  private final String[] kinds;
  private final int[] params;
  private final long flushMs;

  /**
   * @param cluster whether {@code redisUrl} is a node of a Redis Cluster
   * @param tileKeyPrefix what comes before the entity in a tile key ({@code <p>:st:<group>:{})
   * @param tileKeySuffix what comes after it ({@code }})
   * @param kinds per raw column: native, last_time, last, last_k, hll or json
   * @param params per raw column: k or the sketch precision (0 where none)
   */
  public TileSink(
      String redisUrl,
      boolean cluster,
      String tileKeyPrefix,
      String tileKeySuffix,
      String watermarkKey,
      String group,
      long ttlS,
      int joinKeys,
      String[] kinds,
      int[] params,
      long flushMs) {
    this.redisUrl = redisUrl;
    this.cluster = cluster;
    this.tileKeyPrefix = tileKeyPrefix;
    this.tileKeySuffix = tileKeySuffix;
    this.watermarkKey = watermarkKey;
    this.group = group;
    this.ttlS = ttlS;
    this.joinKeys = joinKeys;
    this.kinds = kinds.clone();
    this.params = params.clone();
    this.flushMs = flushMs;
    RedisCommands.open(redisUrl, cluster); // a bad URL fails the job's build, not a task
  }

  @Override
  public SinkWriter<Row> createWriter(WriterInitContext context) {
    return new Writer(context.getProcessingTimeService());
  }

  private final class Writer implements SinkWriter<Row> {
    private final RedisCommands redis = RedisCommands.open(redisUrl, cluster);
    private final ProcessingTimeService time;
    /** entity key -> tile -> the tile's newest row. */
    private Map<String, Map<Long, Row>> pending = new LinkedHashMap<>();
    private long watermark;

    Writer(ProcessingTimeService time) {
      this.time = time;
      schedule();
    }

    private void schedule() {
      time.registerTimer(
          time.getCurrentProcessingTime() + flushMs,
          now -> {
            writePending();
            schedule();
          });
    }

    @Override
    public void write(Row row, Context context) {
      RowKind kind = row.getKind();
      if (kind != RowKind.INSERT && kind != RowKind.UPDATE_AFTER) {
        return;
      }
      String[] keys = new String[joinKeys];
      for (int i = 0; i < joinKeys; i++) {
        keys[i] = (String) row.getField(i);
      }
      String key = tileKeyPrefix + entityId(keys) + tileKeySuffix;
      pending.computeIfAbsent(key, k -> new LinkedHashMap<>()).put((Long) row.getField(joinKeys), row);
    }

    private void writePending() throws IOException, InterruptedException {
      if (pending.isEmpty()) {
        return;
      }
      Map<String, Map<Long, Row>> batch = pending;
      pending = new LinkedHashMap<>();
      long newest = watermark;
      for (Map.Entry<String, Map<Long, Row>> entry : batch.entrySet()) {
        Map<Long, Row> tiles = entry.getValue();
        String[] args = new String[2 + 2 * tiles.size()];
        args[0] = "HSET";
        args[1] = entry.getKey();
        int i = 2;
        for (Map.Entry<Long, Row> tile : tiles.entrySet()) {
          Row row = tile.getValue();
          args[i++] = Long.toString(tile.getKey());
          args[i++] = partials(row);
          Object maxEventTime = row.getField(row.getArity() - 1);
          if (maxEventTime != null) {
            newest = Math.max(newest, ((Number) maxEventTime).longValue());
          }
        }
        redis.command(args);
        redis.command("EXPIRE", entry.getKey(), Long.toString(ttlS));
      }
      if (cluster) {
        // The tiles' masters are not the watermark's: one connection no longer orders them.
        redis.sync(60_000);
      }
      redis.command("EVAL", MAX_WATERMARK, "1", watermarkKey, group, Long.toString(newest));
      redis.sync(60_000);
      watermark = newest;
    }

    private String partials(Row row) {
      StringBuilder json = new StringBuilder("[");
      for (int i = 0; i < kinds.length; i++) {
        if (i > 0) {
          json.append(',');
        }
        partial(json, kinds[i], params[i], row.getField(joinKeys + 1 + i));
      }
      return json.append(']').toString();
    }

    @Override
    public void flush(boolean endOfInput) throws IOException, InterruptedException {
      writePending();
    }

    @Override
    public void close() {
      redis.close();
    }
  }

  // --- the algebra's partials, as JSON (speed_layer/sink.py: to_partial) -------------------

  /** Appends the partial of one raw column (what Flink's tile query emitted) as JSON. */
  static void partial(StringBuilder json, String kind, int param, Object raw) {
    switch (kind) {
      case "native":
        value(json, raw);
        return;
      case "last_time": // MAX(event time): the pair (t, t)
        if (raw == null) {
          json.append("null");
        } else {
          json.append('[').append(raw).append(',').append(raw).append(']');
        }
        return;
      case "last": // the latest pair, or null
        Row[] latest = (Row[]) raw;
        if (latest == null || latest.length == 0) {
          json.append("null");
        } else {
          pair(json, latest[0]);
        }
        return;
      case "last_k": // k pairs, in the order the aggregate emits them (the partial's order)
        json.append('[');
        Row[] pairs = raw == null ? new Row[0] : (Row[]) raw;
        for (int i = 0; i < pairs.length && i < param; i++) {
          if (i > 0) {
            json.append(',');
          }
          pair(json, pairs[i]);
        }
        json.append(']');
        return;
      case "hll":
        if (raw == null) {
          json.append("null");
        } else {
          string(json, sketch((byte[]) raw, param));
        }
        return;
      case "json": // the aggregate emitted its partial's JSON text (null: none)
        json.append(raw == null ? "null" : (String) raw);
        return;
      default:
        throw new IllegalArgumentException("no partial for " + kind);
    }
  }

  private static void pair(StringBuilder json, Row pair) {
    json.append('[').append(pair.getField(0)).append(',');
    value(json, pair.getField(1));
    json.append(']');
  }

  private static void value(StringBuilder json, Object value) {
    if (value == null) {
      json.append("null");
    } else if (value instanceof String) {
      string(json, (String) value);
    } else if (value instanceof Double) {
      double number = (Double) value;
      // orjson writes a non-finite float as null; Java's repr reads back as the same double
      json.append(Double.isFinite(number) ? Double.toString(number) : "null");
    } else {
      json.append(value); // Long, Integer, Boolean
    }
  }

  /**
   * A JSON string exactly as Python's json.dumps(ensure_ascii=False) writes it, so that
   * composite entity ids match feature_core/keys.py's byte for byte.
   */
  static void string(StringBuilder json, String text) {
    json.append('"');
    for (int i = 0; i < text.length(); i++) {
      char c = text.charAt(i);
      switch (c) {
        case '"':
          json.append("\\\"");
          break;
        case '\\':
          json.append("\\\\");
          break;
        case '\n':
          json.append("\\n");
          break;
        case '\r':
          json.append("\\r");
          break;
        case '\t':
          json.append("\\t");
          break;
        case '\b':
          json.append("\\b");
          break;
        case '\f':
          json.append("\\f");
          break;
        default:
          if (c < 0x20) {
            json.append(String.format("\\u%04x", (int) c));
          } else {
            json.append(c);
          }
      }
    }
    json.append('"');
  }

  /** feature_core/keys.py entity_id: the value itself, or a compact JSON array of them. */
  static String entityId(String[] keys) {
    if (keys.length == 1) {
      return keys[0];
    }
    StringBuilder json = new StringBuilder("[");
    for (int i = 0; i < keys.length; i++) {
      if (i > 0) {
        json.append(',');
      }
      string(json, keys[i]);
    }
    return json.append(']').toString();
  }

  /** feature_core/sketches.py encode_dense: sparse while at most m/8 registers are set. */
  static String sketch(byte[] registers, int precision) {
    int m = registers.length;
    int set = 0;
    for (byte rank : registers) {
      if (rank != 0) {
        set++;
      }
    }
    Base64.Encoder base64 = Base64.getEncoder();
    if (set > m / 8) {
      return "d" + precision + ":" + base64.encodeToString(registers);
    }
    byte[] packed = new byte[3 * set];
    int at = 0;
    for (int index = 0; index < m; index++) {
      if (registers[index] != 0) {
        packed[at++] = (byte) (index >>> 8);
        packed[at++] = (byte) index;
        packed[at++] = registers[index];
      }
    }
    return "s" + precision + ":" + base64.encodeToString(packed);
  }

  /**
   * For the parity test: each stdin line is a JSON array [kind, param, raw] (raw pairs as
   * [[t, v], ...], registers as base64) -> the partial's JSON; "id" lines -> entityId;
   * "slot" lines -> the Redis Cluster hash slot of a key.
   */
  public static void main(String[] args) throws IOException {
    org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper mapper =
        new org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper();
    java.io.BufferedReader in =
        new java.io.BufferedReader(
            new java.io.InputStreamReader(System.in, java.nio.charset.StandardCharsets.UTF_8));
    java.io.PrintStream out = new java.io.PrintStream(System.out, false, "UTF-8");
    for (String line = in.readLine(); line != null; line = in.readLine()) {
      var node = mapper.readTree(line);
      String kind = node.get(0).asText();
      StringBuilder json = new StringBuilder();
      if (kind.equals("id")) {
        String[] keys = new String[node.get(1).size()];
        for (int i = 0; i < keys.length; i++) {
          keys[i] = node.get(1).get(i).asText();
        }
        string(json, entityId(keys));
      } else if (kind.equals("slot")) {
        json.append(RedisClusterPipeline.slot(node.get(1).asText()));
      } else if (kind.equals("redact")) {
        string(json, RedisPipeline.redact(node.get(1).asText()));
      } else if (kind.equals("ping")) {
        string(json, ping(node.get(1).asText()));
      } else if (kind.equals("tls")) {
        string(json, endpointIdentification());
      } else if (kind.equals("authority")) {
        string(json, RedisClusterPipeline.inUrl(node.get(1).asText()));
      } else if (kind.equals("write") || kind.equals("write-one")) {
        boolean cluster = kind.equals("write");
        string(json, write(node.get(1).asText(), node.get(2), node.get(3).asLong(), cluster));
      } else {
        partial(json, kind, node.get(1).asInt(), raw(kind, node.get(2)));
      }
      out.println(json);
      out.flush();
    }
  }

  /** PING over a new connection to {@code url}, as the sink connects: the reply or the error. */
  private static String ping(String url) {
    RedisPipeline pipe;
    try {
      pipe = new RedisPipeline(url);
    } catch (IllegalArgumentException error) {
      return error.getMessage();
    }
    try {
      return String.valueOf(pipe.call("PING"));
    } catch (IOException error) {
      return error.toString();
    } finally {
      pipe.close();
    }
  }

  /** The endpoint identification of the sink's TLS sockets (over a loopback connection). */
  private static String endpointIdentification() throws IOException {
    try (java.net.ServerSocket server =
            new java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress());
        java.net.Socket plain = new java.net.Socket()) {
      plain.connect(server.getLocalSocketAddress());
      javax.net.ssl.SSLSocket tls =
          RedisPipeline.tlsSocket(
              RedisPipeline.tlsFactory(null), plain, "localhost", server.getLocalPort(), true);
      String algorithm = tls.getSSLParameters().getEndpointIdentificationAlgorithm();
      tls.close();
      return String.valueOf(algorithm);
    }
  }

  /** Sends commands to one Redis server or a cluster as the sink does: "ok", or the error. */
  private static String write(
      String url,
      org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode commands,
      long giveUpMs,
      boolean cluster) {
    RedisCommands redis = RedisCommands.open(url, cluster);
    try {
      for (var command : commands) {
        String[] args = new String[command.size()];
        for (int i = 0; i < args.length; i++) {
          args[i] = command.get(i).asText();
        }
        redis.command(args);
      }
      redis.sync(giveUpMs);
      return "ok";
    } catch (IOException | InterruptedException error) {
      return error.getMessage();
    } finally {
      redis.close();
    }
  }

  private static Object raw(
      String kind, org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode node) {
    if (node.isNull()) {
      return null;
    }
    switch (kind) {
      case "hll":
        return Base64.getDecoder().decode(node.asText());
      case "json":
        return node.asText();
      case "last":
      case "last_k":
        Row[] pairs = new Row[node.size()];
        for (int i = 0; i < pairs.length; i++) {
          pairs[i] = Row.of(node.get(i).get(0).asLong(), scalar(node.get(i).get(1)));
        }
        return pairs;
      default:
        return scalar(node);
    }
  }

  private static Object scalar(
      org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode node) {
    if (node.isTextual()) {
      return node.asText();
    }
    if (node.isBoolean()) {
      return node.asBoolean();
    }
    if (node.isIntegralNumber()) {
      return node.asLong();
    }
    return node.isNull() ? null : node.asDouble();
  }
}
