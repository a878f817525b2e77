package lfp.speed;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.table.functions.AggregateFunction;
import org.apache.flink.types.Row;

/**
 * A tile's count, mean and sum of squared deviations: the engine form of the algebra's
 * "moments" partial (feature_core/aggregations/moments.py), emitted as its JSON text
 * {@code [n,mean,m2,mean_low]}, or null for a tile without values.
 *
 * <p>Flink SQL's own VAR_POP is rewritten to (SUM(x*x) - SUM(x)^2/n) / n, which loses every
 * digit to cancellation when the values share a large offset. Here each value is merged as
 * the one-value partial [1, x, 0, 0] by Chan et al.'s formula (for one value, Welford's
 * update), the mean kept as a double-double (mean + mean_low) so that its rounding does
 * not enter the squared deviations. The operations are combine_moments' in moments.py, in
 * the same order, so the text parses to the floats Python computes for the same values in
 * the same order. State: four numbers, however many values the tile sees.
 */
@FunctionHint(
    input = @DataTypeHint("DOUBLE"),
    accumulator = @DataTypeHint("ROW<n BIGINT, mean DOUBLE, m2 DOUBLE, low DOUBLE>"),
    output = @DataTypeHint("STRING"))
public class Moments extends AggregateFunction<String, Row> {

  @Override
  public Row createAccumulator() {
    return Row.of(0L, 0.0, 0.0, 0.0);
  }

  public void accumulate(Row acc, Double value) {
    if (value != null) {
      add(acc, 1L, value, 0.0, 0.0);
    }
  }

  public void merge(Row acc, Iterable<Row> others) {
    for (Row other : others) {
      add(
          acc,
          (Long) other.getField(0),
          (Double) other.getField(1),
          (Double) other.getField(2),
          (Double) other.getField(3));
    }
  }

  /** Merges the partial (nB, meanB, m2B, lowB) into acc: moments.py's combine_moments. */
  static void add(Row acc, long nB, double meanB, double m2B, double lowB) {
    if (nB == 0) {
      return;
    }
    long nA = (Long) acc.getField(0);
    if (nA == 0) { // the empty accumulator is the identity
      set(acc, nB, meanB, m2B, lowB);
      return;
    }
    double meanA = (Double) acc.getField(1);
    double m2A = (Double) acc.getField(2);
    double lowA = (Double) acc.getField(3);
    long n = nA + nB;
    double difference = meanB + (-meanA);
    double delta = difference + (twoSumError(meanB, -meanA, difference) + (lowB - lowA));
    double step = delta * ((double) nB / (double) n);
    double moved = meanA + step;
    double movedError = twoSumError(meanA, step, moved);
    double low = movedError + lowA;
    double mean = moved + low;
    double meanLow = twoSumError(moved, low, mean);
    double m2 = m2A + m2B + delta * delta * ((double) nA * (double) nB / (double) n);
    set(acc, n, mean, m2, meanLow);
  }

  /** The error e of s = fl(a + b), with s + e == a + b exactly (Knuth's two-sum). */
  static double twoSumError(double a, double b, double s) {
    double bPart = s - a;
    return (a - (s - bPart)) + (b - bPart);
  }

  private static void set(Row acc, long n, double mean, double m2, double low) {
    acc.setField(0, n);
    acc.setField(1, mean);
    acc.setField(2, m2);
    acc.setField(3, low);
  }

  @Override
  public String getValue(Row acc) {
    long n = (Long) acc.getField(0);
    if (n == 0) {
      return null;
    }
    StringBuilder json = new StringBuilder("[").append(n);
    for (int i = 1; i < 4; i++) {
      double number = (Double) acc.getField(i);
      // orjson writes a non-finite float as null; Java's repr reads back as the same double
      json.append(',').append(Double.isFinite(number) ? Double.toString(number) : "null");
    }
    return json.append(']').toString();
  }

  /**
   * For the parity test (tests/speed_layer/jvm_harness.py): each stdin line is groups of
   * values (Python reprs) separated by "|"; each group is accumulated in order into its own
   * accumulator, the others are merged into the first in order, and the answer, one line
   * per line, is getValue ("null": no values).
   */
  public static void main(String[] args) throws IOException {
    Moments moments = new Moments();
    BufferedReader in =
        new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    for (String line = in.readLine(); line != null; line = in.readLine()) {
      List<Row> groups = new ArrayList<>();
      for (String group : line.split("\\|", -1)) {
        Row acc = moments.createAccumulator();
        for (String value : group.trim().split(" ")) {
          if (!value.isEmpty()) {
            moments.accumulate(acc, Double.parseDouble(value));
          }
        }
        groups.add(acc);
      }
      Row first = groups.get(0);
      moments.merge(first, groups.subList(1, groups.size()));
      String value = moments.getValue(first);
      System.out.println(value == null ? "null" : value);
      System.out.flush();
    }
  }
}
