package lfp.speed;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.table.functions.AggregateFunction;
import org.apache.flink.types.Row;

/**
 * Events per value of a tile: the engine form of the algebra's "count_by" partial
 * (feature_core/aggregations/counts_by.py), emitted as its JSON text, [[value, count], ...]
 * ascending by value, or null for a tile without values.
 *
 * <p>With maxKeys above 0 only the maxKeys smallest values are kept, each with its exact
 * count: the smallest values of a union are among the smallest of each part, so truncating
 * every accumulator (on accumulate and on merge) gives the partial the algebra gives, in any
 * merge order, with state bounded by maxKeys. maxKeys 0 keeps every value (a field with
 * declared values: their number bounds it).
 *
 * <p>Values order as in Python: strings by code point, integers numerically, false before
 * true. One subclass per value type declares the SQL types (and its typed accumulate, which
 * Flink's type extraction reads). The accumulator is a row of maxKeys (merge is not given
 * the arguments), the values ascending, and their counts.
 */
public abstract class CountsByValue<V extends Comparable<V>> extends AggregateFunction<String, Row> {

  /** Negative, zero or positive as {@code a} orders before, with or after {@code b}. */
  protected int compareValues(V a, V b) {
    return a.compareTo(b);
  }

  /** A new array of values of this class's type (Flink converts the accumulator's by type). */
  protected abstract V[] newValues(int size);

  /** One value as JSON. */
  protected abstract void appendJson(StringBuilder json, V value);

  @Override
  public Row createAccumulator() {
    return Row.of(0, newValues(0), new Long[0]);
  }

  @SuppressWarnings("unchecked")
  private V[] values(Row acc) {
    return (V[]) acc.getField(1);
  }

  private static Long[] counts(Row acc) {
    return (Long[]) acc.getField(2);
  }

  /** Index of {@code value} in the ascending values, or -(insertion point) - 1. */
  private int search(V[] values, V value) {
    int lo = 0;
    int hi = values.length - 1;
    while (lo <= hi) {
      int mid = (lo + hi) >>> 1;
      int order = compareValues(values[mid], value);
      if (order < 0) {
        lo = mid + 1;
      } else if (order > 0) {
        hi = mid - 1;
      } else {
        return mid;
      }
    }
    return -lo - 1;
  }

  protected void add(Row acc, V value, Integer maxKeys) {
    if (value == null) {
      return;
    }
    int limit = maxKeys == null || maxKeys < 0 ? 0 : maxKeys;
    acc.setField(0, limit);
    V[] values = values(acc);
    Long[] counts = counts(acc);
    int found = search(values, value);
    if (found >= 0) {
      counts[found] = counts[found] + 1;
      return;
    }
    int at = -found - 1;
    if (limit > 0 && at >= limit) {
      return; // larger than every kept value, and maxKeys are kept
    }
    int size = limit > 0 ? Math.min(values.length + 1, limit) : values.length + 1;
    V[] nextValues = newValues(size);
    Long[] nextCounts = new Long[size];
    System.arraycopy(values, 0, nextValues, 0, at);
    System.arraycopy(counts, 0, nextCounts, 0, at);
    nextValues[at] = value;
    nextCounts[at] = 1L;
    System.arraycopy(values, at, nextValues, at + 1, size - at - 1);
    System.arraycopy(counts, at, nextCounts, at + 1, size - at - 1);
    acc.setField(1, nextValues);
    acc.setField(2, nextCounts);
  }

  /** Merges into fresh arrays: the others' arrays are never shared, nor updated. */
  public void merge(Row acc, Iterable<Row> others) {
    int limit = (Integer) acc.getField(0);
    V[] values = values(acc);
    Long[] counts = counts(acc);
    for (Row other : others) {
      limit = Math.max(limit, (Integer) other.getField(0));
      V[] theirValues = values(other);
      Long[] theirCounts = counts(other);
      int total = values.length + theirValues.length;
      int size = limit > 0 ? Math.min(total, limit) : total;
      V[] nextValues = newValues(size);
      Long[] nextCounts = new Long[size];
      int i = 0;
      int j = 0;
      int n = 0;
      while (n < size && (i < values.length || j < theirValues.length)) {
        int order =
            i == values.length ? 1
                : j == theirValues.length ? -1
                : compareValues(values[i], theirValues[j]);
        if (order < 0) {
          nextValues[n] = values[i];
          nextCounts[n++] = counts[i++];
        } else if (order > 0) {
          nextValues[n] = theirValues[j];
          nextCounts[n++] = theirCounts[j++];
        } else {
          nextValues[n] = values[i];
          nextCounts[n++] = counts[i++] + theirCounts[j++];
        }
      }
      if (n < size) { // shared values made the union smaller
        values = java.util.Arrays.copyOf(nextValues, n);
        counts = java.util.Arrays.copyOf(nextCounts, n);
      } else {
        values = nextValues;
        counts = nextCounts;
      }
    }
    acc.setField(0, limit);
    acc.setField(1, values);
    acc.setField(2, counts);
  }

  @Override
  public String getValue(Row acc) {
    V[] values = values(acc);
    Long[] counts = counts(acc);
    if (values.length == 0) {
      return null;
    }
    StringBuilder json = new StringBuilder("[");
    for (int i = 0; i < values.length; i++) {
      if (i > 0) {
        json.append(',');
      }
      json.append('[');
      appendJson(json, values[i]);
      json.append(',').append(counts[i].longValue()).append(']');
    }
    return json.append(']').toString();
  }

  /**
   * For the parity test: each stdin line is a JSON array [type, maxKeys, [[values...],
   * ...]] (type: string, bigint or boolean) -> the emitted JSON ("null" for none) of one
   * accumulator per inner list, merged in the given order into the first (as Flink's
   * global phase does, into an accumulator that has seen events of its own).
   */
  public static void main(String[] args) throws java.io.IOException {
    var mapper = new org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper();
    var in =
        new java.io.BufferedReader(
            new java.io.InputStreamReader(System.in, java.nio.charset.StandardCharsets.UTF_8));
    var out = new java.io.PrintStream(System.out, false, "UTF-8");
    for (String line = in.readLine(); line != null; line = in.readLine()) {
      JsonNode request = mapper.readTree(line);
      String type = request.get(0).asText();
      int maxKeys = request.get(1).asInt();
      CountsByValue<?> function;
      switch (type) {
        case "string":
          function = new CountsByStrings();
          break;
        case "bigint":
          function = new CountsByLongs();
          break;
        case "boolean":
          function = new CountsByBooleans();
          break;
        default:
          throw new IllegalArgumentException("no counts by value of type " + type);
      }
      String emitted = mergedParts(function, request.get(2), maxKeys);
      out.println(emitted == null ? "null" : emitted);
      out.flush();
    }
  }

  private static <V extends Comparable<V>> String mergedParts(
      CountsByValue<V> function, JsonNode parts, int maxKeys) {
    java.util.List<Row> accumulators = new java.util.ArrayList<>();
    for (JsonNode part : parts) {
      Row acc = function.createAccumulator();
      for (JsonNode node : part) {
        function.add(acc, function.fromJson(node), maxKeys);
      }
      accumulators.add(acc);
    }
    if (accumulators.isEmpty()) {
      return function.getValue(function.createAccumulator());
    }
    Row first = accumulators.get(0);
    for (Row other : accumulators.subList(1, accumulators.size())) {
      function.merge(first, java.util.List.of(other));
    }
    return function.getValue(first);
  }

  /** A value of the parity test's JSON (null: a null value). */
  protected abstract V fromJson(JsonNode node);
}
