package lfp.speed;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.table.functions.AggregateFunction;
import org.apache.flink.types.Row;

/**
 * The decayed sum of a tile's weights: the engine form of the algebra's "decayed_sum" and
 * "decayed_count" partials (feature_core/aggregations/decay.py), [anchor, value] with the
 * anchor the newest event time and value the sum of weight * 2^((time - anchor) / h).
 *
 * <p>Each event is merged into the accumulator as the algebra merges its lifted [time,
 * weight]: the older side is rebased to the newer anchor (exponents at most 0, so nothing
 * overflows), equal anchors add. State is three numbers however many events a tile sees.
 * Emits the partial's JSON text (sink kind "json"), or null for a tile without weights.
 *
 * <p>Arguments: event time (ms), weight (null: skipped), half-life (ms; it travels in the
 * accumulator because merge is not given the arguments).
 */
@FunctionHint(
    input = {@DataTypeHint("BIGINT"), @DataTypeHint("DOUBLE"), @DataTypeHint("BIGINT")},
    accumulator = @DataTypeHint("ROW<anchor BIGINT, total DOUBLE, halfLife BIGINT>"),
    output = @DataTypeHint("STRING"))
public class DecayedSum extends AggregateFunction<String, Row> {

  @Override
  public Row createAccumulator() {
    return Row.of(null, 0.0, 0L);
  }

  /**
   * value * 2^exponent as the algebra's scaled(): the exponent's fraction scales the
   * value's mantissa (in [1, 2)), the whole part and the value's own binary exponent shift
   * the result exactly (scalb rounds only a subnormal result), so neither 2^exponent
   * alone nor the value times 2^fraction leaves the double range before the product does.
   */
  static double scaled(double value, double exponent) {
    if (value == 0.0 || exponent == 0.0 || !Double.isFinite(value)) {
      return value;
    }
    double whole = Math.floor(exponent);
    int binary = Math.getExponent(value);
    if (binary < Double.MIN_EXPONENT) { // subnormal: its exponent from an exact rescale
      binary = Math.getExponent(value * 0x1p54) - 54;
    }
    double mantissa = Math.scalb(value, -binary);
    double shift = whole + binary;
    // Past 2^+-4000 every double is inf or 0 anyway; scalb takes an int.
    return Math.scalb(
        mantissa * Math.pow(2.0, exponent - whole), (int) Math.max(-4000.0, Math.min(4000.0, shift)));
  }

  /** Merges the partial [anchor, total] into the accumulator, as the algebra's combine. */
  static void combine(Row acc, long anchor, double total, long halfLife) {
    if (halfLife > 0) {
      acc.setField(2, halfLife);
    }
    Long mine = (Long) acc.getField(0);
    if (mine == null) {
      acc.setField(0, anchor);
      acc.setField(1, total);
      return;
    }
    double own = (Double) acc.getField(1);
    long h = (Long) acc.getField(2);
    if (mine == anchor) {
      acc.setField(1, own + total);
    } else if (mine < anchor) {
      acc.setField(0, anchor);
      acc.setField(1, total + scaled(own, (double) (mine - anchor) / (double) h));
    } else {
      acc.setField(1, own + scaled(total, (double) (anchor - mine) / (double) h));
    }
  }

  public void accumulate(Row acc, Long time, Double weight, Long halfLife) {
    if (time == null || weight == null || halfLife == null || halfLife <= 0) {
      return;
    }
    combine(acc, time, weight, halfLife);
  }

  public void merge(Row acc, Iterable<Row> others) {
    for (Row other : others) {
      Long anchor = (Long) other.getField(0);
      if (anchor != null) {
        combine(acc, anchor, (Double) other.getField(1), (Long) other.getField(2));
      }
    }
  }

  /** The partial's JSON text; a non-finite sum is null there, as orjson writes it. */
  @Override
  public String getValue(Row acc) {
    Long anchor = (Long) acc.getField(0);
    if (anchor == null) {
      return null;
    }
    double total = (Double) acc.getField(1);
    String number = Double.isFinite(total) ? Double.toString(total) : "null";
    return "[" + anchor + "," + number + "]";
  }

  /**
   * For the parity test: each stdin line is "h|t w t w ...|t w ..." (a half-life, then
   * groups of events); each group is accumulated on its own, then the groups are merged
   * in order into the first; prints the partial's JSON text ("null" for none).
   */
  public static void main(String[] args) throws java.io.IOException {
    java.io.BufferedReader in =
        new java.io.BufferedReader(
            new java.io.InputStreamReader(System.in, java.nio.charset.StandardCharsets.UTF_8));
    DecayedSum function = new DecayedSum();
    for (String line = in.readLine(); line != null; line = in.readLine()) {
      String[] parts = line.split("\\|", -1);
      long halfLife = Long.parseLong(parts[0].trim());
      java.util.List<Row> groups = new java.util.ArrayList<>();
      for (int i = 1; i < parts.length; i++) {
        Row acc = function.createAccumulator();
        String[] tokens = parts[i].trim().split("\\s+");
        for (int j = 0; j + 1 < tokens.length; j += 2) {
          function.accumulate(
              acc, Long.parseLong(tokens[j]), Double.parseDouble(tokens[j + 1]), halfLife);
        }
        groups.add(acc);
      }
      Row result = groups.isEmpty() ? function.createAccumulator() : groups.get(0);
      if (groups.size() > 1) {
        function.merge(result, groups.subList(1, groups.size()));
      }
      String value = function.getValue(result);
      System.out.println(value == null ? "null" : value);
      System.out.flush();
    }
  }
}
