package lfp.speed;

import java.io.ByteArrayOutputStream;
import java.util.Arrays;
import java.util.Base64;
import java.util.HashMap;
import java.util.Map;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.table.functions.AggregateFunction;
import org.apache.flink.types.Row;

/**
 * The DDSketch of a tile's values: the engine form of the algebra's "ddsketch" partial
 * (feature_core/ddsketch.py), byte for byte. Each value adds one to the count of its bucket,
 * keyed from the double's bits with long arithmetic exactly as key_of does (never Math.log,
 * which may differ from C's log by an ulp at a bucket boundary), so a tile's state is its
 * bucket counts (at most m per binary octave the values span, per sign), however many values
 * it sees; merge adds counts.
 *
 * <p>Emits the partial's JSON text, the serialized sketch as a JSON string literal (sink kind
 * "json"), or null for a tile without values, as the algebra's partial is null then.
 */
@FunctionHint(
    input = {@DataTypeHint("DOUBLE"), @DataTypeHint("INT")},
    accumulator =
        @DataTypeHint(
            "ROW<m INT, zero BIGINT, negative MAP<INT, BIGINT>, positive MAP<INT, BIGINT>>"),
    output = @DataTypeHint("STRING"))
public class PercentileSketch extends AggregateFunction<String, Row> {

  private static final int MANTISSA_BITS = 52;
  private static final long MANTISSA_MASK = (1L << MANTISSA_BITS) - 1;
  private static final int EXPONENT_MAX = 0x7FF;
  private static final int EXPONENT_BIAS = 1023;

  private static final int M = 0;
  private static final int ZERO = 1;
  private static final int NEGATIVE = 2;
  private static final int POSITIVE = 3;

  @Override
  public Row createAccumulator() {
    return Row.of(0, 0L, new HashMap<Integer, Long>(), new HashMap<Integer, Long>());
  }

  /**
   * The bucket key of |value| (e * m + floor(f * m / 2^52); f * m < 2^61 for m < 2^9), or
   * null for zeros and values below the smallest normal double, which are the zero count.
   * Callers skip NaN and infinities first.
   */
  static Integer keyOf(double value, int m) {
    long bits = Double.doubleToRawLongBits(value);
    int biased = (int) ((bits >>> MANTISSA_BITS) & EXPONENT_MAX);
    if (biased == 0) {
      return null;
    }
    long key = (long) (biased - EXPONENT_BIAS) * m + (((bits & MANTISSA_MASK) * m) >>> MANTISSA_BITS);
    return (int) key;
  }

  /** A store of the accumulator that can be updated (Flink may hand back another Map). */
  @SuppressWarnings("unchecked")
  private static Map<Integer, Long> store(Row acc, int field) {
    Map<Integer, Long> counts = (Map<Integer, Long>) acc.getField(field);
    if (!(counts instanceof HashMap)) {
      counts = counts == null ? new HashMap<>() : new HashMap<>(counts);
      acc.setField(field, counts);
    }
    return counts;
  }

  public void accumulate(Row acc, Double value, Integer m) {
    if (value == null || m == null || m < 1 || !Double.isFinite(value)) {
      return;
    }
    acc.setField(M, m);
    Integer key = keyOf(value, m);
    if (key == null) {
      acc.setField(ZERO, (Long) acc.getField(ZERO) + 1);
      return;
    }
    store(acc, value < 0 ? NEGATIVE : POSITIVE).merge(key, 1L, Long::sum);
  }

  @SuppressWarnings("unchecked")
  public void merge(Row acc, Iterable<Row> others) {
    for (Row other : others) {
      int m = (Integer) other.getField(M);
      if (m == 0) {
        continue; // saw no values
      }
      int own = (Integer) acc.getField(M);
      if (own != 0 && own != m) {
        throw new IllegalArgumentException(
            "cannot merge DDSketches of " + own + " and " + m + " buckets per octave");
      }
      acc.setField(M, m);
      acc.setField(ZERO, (Long) acc.getField(ZERO) + (Long) other.getField(ZERO));
      for (int field : new int[] {NEGATIVE, POSITIVE}) {
        Map<Integer, Long> counts = store(acc, field);
        Map<Integer, Long> theirs = (Map<Integer, Long>) other.getField(field);
        if (theirs != null) {
          theirs.forEach((key, count) -> counts.merge(key, count, Long::sum));
        }
      }
    }
  }

  @Override
  @SuppressWarnings("unchecked")
  public String getValue(Row acc) {
    int m = (Integer) acc.getField(M);
    if (m == 0) {
      return null;
    }
    String sketch =
        encode(
            m,
            (Long) acc.getField(ZERO),
            (Map<Integer, Long>) acc.getField(NEGATIVE),
            (Map<Integer, Long>) acc.getField(POSITIVE));
    return "\"" + sketch + "\""; // base64 and digits: nothing to escape
  }

  /**
   * The canonical serialized sketch, as ddsketch.Buckets.encode writes it: "dd<m>:" + base64
   * of varints: the zero count, then per store (negative, positive) its size and, by key
   * ascending, (zigzag(key - previous key), count).
   */
  static String encode(int m, long zero, Map<Integer, Long> negative, Map<Integer, Long> positive) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    varint(out, zero);
    for (Map<Integer, Long> counts : Arrays.asList(negative, positive)) {
      int[] keys = counts.keySet().stream().mapToInt(Integer::intValue).sorted().toArray();
      varint(out, keys.length);
      long previous = 0;
      for (int key : keys) {
        long delta = key - previous;
        varint(out, (delta << 1) ^ (delta >> 63));
        varint(out, counts.get(key));
        previous = key;
      }
    }
    return "dd" + m + ":" + Base64.getEncoder().encodeToString(out.toByteArray());
  }

  /** Unsigned LEB128. */
  private static void varint(ByteArrayOutputStream out, long number) {
    while ((number & ~0x7FL) != 0) {
      out.write((int) ((number & 0x7F) | 0x80));
      number >>>= 7;
    }
    out.write((int) number);
  }

  /**
   * For the parity test: each stdin line "m bits bits | bits ..." (the values' IEEE-754 bits
   * in hex; "|" starts another accumulator, all merged into the first) -> what getValue emits,
   * or "null".
   */
  public static void main(String[] args) throws java.io.IOException {
    java.io.BufferedReader in =
        new java.io.BufferedReader(
            new java.io.InputStreamReader(System.in, java.nio.charset.StandardCharsets.UTF_8));
    PercentileSketch sketch = new PercentileSketch();
    for (String line = in.readLine(); line != null; line = in.readLine()) {
      String[] tokens = line.trim().split("\\s+");
      int m = Integer.parseInt(tokens[0]);
      java.util.List<Row> accumulators = new java.util.ArrayList<>();
      Row acc = sketch.createAccumulator();
      accumulators.add(acc);
      for (int i = 1; i < tokens.length; i++) {
        if (tokens[i].equals("|")) {
          acc = sketch.createAccumulator();
          accumulators.add(acc);
        } else {
          sketch.accumulate(acc, Double.longBitsToDouble(Long.parseUnsignedLong(tokens[i], 16)), m);
        }
      }
      Row first = accumulators.get(0);
      sketch.merge(first, accumulators.subList(1, accumulators.size()));
      String value = sketch.getValue(first);
      System.out.println(value == null ? "null" : value);
      System.out.flush();
    }
  }
}
