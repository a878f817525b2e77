package lfp.speed;

import java.util.Arrays;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.table.functions.AggregateFunction;
import org.apache.flink.types.Row;

/**
 * The k largest or k smallest values of a tile: the engine form of the algebra's "top_k" and
 * "bottom_k" partials (feature_core/aggregations/ranked.py). State is at most k values
 * however many events the tile sees, and the emitted value is the partial's JSON text (a
 * list, largest or smallest first, duplicates kept), which the tile sink writes as is.
 *
 * <p>Values order as Python compares them ({@link LatestPairs#compareValues}: strings by code
 * point, -0.0 equal to 0.0). One subclass per value type declares the SQL types
 * and its typed accumulate, which Flink's type extraction reads. The accumulator is a row of
 * k, the direction (null until the first value: merge is not given the arguments, and a
 * local accumulator that saw no value must not impose one) and the kept values, best first.
 */
public abstract class RankedValues<V> extends AggregateFunction<String, Row> {

  private final V[] none;

  /** {@code none}: an empty array of the value type (Flink converts ARRAY<T> to a T[]). */
  protected RankedValues(V[] none) {
    this.none = none;
  }

  /** Appends one kept value as JSON that Python reads back as the same value. */
  protected abstract void appendJson(StringBuilder json, V value);

  @Override
  public Row createAccumulator() {
    return Row.of(1, null, none);
  }

  /**
   * Inserts one value into the kept values (best first), keeping at most k: a value goes
   * after those that rank before or with it, and nowhere if k of them do.
   */
  private V[] insert(V[] kept, V value, int k, boolean largest) {
    int sign = largest ? -1 : 1; // "ranks before" is "larger" for top k, "smaller" for bottom
    int low = 0;
    int high = kept.length;
    while (low < high) { // the first kept value that ranks strictly after the new one
      int middle = (low + high) >>> 1;
      if (sign * LatestPairs.compareValues(kept[middle], value) <= 0) {
        low = middle + 1;
      } else {
        high = middle;
      }
    }
    if (low >= k) {
      return kept;
    }
    int size = Math.min(kept.length + 1, k);
    V[] next = Arrays.copyOf(kept, size);
    System.arraycopy(kept, low, next, low + 1, size - low - 1);
    next[low] = value;
    return next;
  }

  @SuppressWarnings("unchecked")
  protected void add(Row acc, V value, Integer k, Boolean largest) {
    if (value == null || k == null || k < 1 || largest == null) {
      return;
    }
    acc.setField(0, k);
    acc.setField(1, largest);
    acc.setField(2, insert((V[]) acc.getField(2), value, k, largest));
  }

  @SuppressWarnings("unchecked")
  public void merge(Row acc, Iterable<Row> others) {
    int k = (Integer) acc.getField(0);
    Boolean largest = (Boolean) acc.getField(1);
    V[] kept = (V[]) acc.getField(2);
    for (Row other : others) {
      V[] theirs = (V[]) other.getField(2);
      if (theirs.length == 0) {
        continue;
      }
      k = Math.max(k, (Integer) other.getField(0));
      largest = (Boolean) other.getField(1);
      for (V value : theirs) {
        kept = insert(kept, value, k, largest);
      }
    }
    acc.setField(0, k);
    acc.setField(1, largest);
    acc.setField(2, kept);
  }

  /** The kept values as the partial's JSON list ("[]" for none, the algebra's identity). */
  @SuppressWarnings("unchecked")
  @Override
  public String getValue(Row acc) {
    StringBuilder json = new StringBuilder("[");
    V[] kept = (V[]) acc.getField(2);
    for (int i = 0; i < kept.length; i++) {
      if (i > 0) {
        json.append(',');
      }
      appendJson(json, kept[i]);
    }
    return json.append(']').toString();
  }

  /**
   * For the parity test: each stdin line is a JSON array [type, k, largest, [values...],
   * split] (type: string, bigint or double) -> the emitted JSON of the values accumulated
   * into two accumulators, the first {@code split} values and the rest, then merged into a
   * third, fresh one (as Flink's global phase does).
   */
  public static void main(String[] args) throws java.io.IOException {
    var mapper = new org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper();
    var in =
        new java.io.BufferedReader(
            new java.io.InputStreamReader(System.in, java.nio.charset.StandardCharsets.UTF_8));
    var out = new java.io.PrintStream(System.out, false, "UTF-8");
    for (String line = in.readLine(); line != null; line = in.readLine()) {
      var request = mapper.readTree(line);
      int k = request.get(1).asInt();
      boolean largest = request.get(2).asBoolean();
      var values = new java.util.ArrayList<Object>();
      request.get(3).forEach(values::add);
      int split = request.get(4).asInt();
      String type = request.get(0).asText();
      String emitted;
      switch (type) {
        case "string":
          values.replaceAll(node -> ((JsonNode) node).textValue());
          emitted = twoPhase(new RankedStrings(), values, k, largest, split);
          break;
        case "bigint":
          values.replaceAll(node -> ((JsonNode) node).longValue());
          emitted = twoPhase(new RankedLongs(), values, k, largest, split);
          break;
        case "double":
          values.replaceAll(node -> ((JsonNode) node).doubleValue());
          emitted = twoPhase(new RankedDoubles(), values, k, largest, split);
          break;
        default:
          throw new IllegalArgumentException("no ranked values of type " + type);
      }
      out.println(emitted);
      out.flush();
    }
  }

  @SuppressWarnings("unchecked")
  private static <V> String twoPhase(
      RankedValues<V> function, java.util.List<Object> values, int k, boolean largest, int split) {
    Row first = function.createAccumulator();
    Row second = function.createAccumulator();
    for (int i = 0; i < values.size(); i++) {
      function.add(i < split ? first : second, (V) values.get(i), k, largest);
    }
    Row global = function.createAccumulator();
    function.merge(global, Arrays.asList(first, second));
    return function.getValue(global);
  }
}
