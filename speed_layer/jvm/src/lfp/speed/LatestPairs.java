package lfp.speed;

import org.apache.flink.table.functions.AggregateFunction;
import org.apache.flink.types.Row;

/**
 * The k latest (time, value) pairs of a tile, newest first: the engine form of the
 * algebra's "last" (k = 1) and "last_k" partials; or, run oldest first, the k earliest
 * pairs, oldest first: "first" and "first_k" (feature_core/aggregations/pairs.py).
 *
 * <p>Pairs order as the algebra's [time, value] lists do in Python: by time, then by value
 * (strings by code point, false before true), duplicates kept. Newest first keeps the k
 * largest pairs, largest first; oldest first keeps the k smallest, smallest first: in
 * both directions the emitted order is the partial's own, so the tile sink writes the
 * pairs as they come. The Redis writer reduces the emitted pairs with the algebra itself
 * (Primitive.from_pairs), so this function only has to keep every pair that can be among
 * the k kept; it keeps exactly those, so state and each emitted update stay bounded by k
 * instead of growing with the tile's events.
 *
 * <p>One subclass per value type and direction declares the SQL types (and its typed
 * accumulate, which Flink's type extraction reads): LatestStrings... newest first,
 * EarliestStrings... oldest first. The accumulator is a row of k and the pairs, in the
 * emitted order (k travels in it because merge is not given the arguments).
 */
public abstract class LatestPairs<V extends Comparable<V>> extends AggregateFunction<Row[], Row> {

  /** 1: keep the largest pairs, largest first (newest); -1: the smallest, smallest first. */
  private final int direction;

  /** Newest first: the "last" and "last_k" twins. */
  protected LatestPairs() {
    this(false);
  }

  /** Oldest first ({@code oldestFirst}): the "first" and "first_k" twins. */
  protected LatestPairs(boolean oldestFirst) {
    this.direction = oldestFirst ? -1 : 1;
  }

  /**
   * Negative, zero or positive as {@code a} orders before, with or after {@code b}, as in
   * Python: strings by code point, floats with -0.0 equal to 0.0; integers and booleans in
   * Java's natural order, which is Python's.
   */
  @SuppressWarnings("unchecked")
  static int compareValues(Object a, Object b) {
    if (a instanceof String) {
      return compareCodePoints((String) a, (String) b);
    }
    if (a instanceof Double) {
      return compareDoubles((Double) a, (Double) b);
    }
    return ((Comparable<Object>) a).compareTo(b);
  }

  @Override
  public Row createAccumulator() {
    return Row.of(1, new Row[0]);
  }

  /** Positive as pair a goes before pair b in the kept order (newest first: the larger). */
  private int precedence(long timeA, Object a, long timeB, Object b) {
    int byTime = Long.compare(timeA, timeB);
    return direction * (byTime != 0 ? byTime : compareValues(a, b));
  }

  /** Inserts one pair, keeping at most k in the kept order (a new pair goes after equals). */
  private Row[] insert(Row[] pairs, long time, Object value, int k) {
    int at = pairs.length;
    while (at > 0) {
      Row before = pairs[at - 1];
      if (precedence((Long) before.getField(0), before.getField(1), time, value) >= 0) {
        break;
      }
      at--;
    }
    if (at >= k) {
      return pairs;
    }
    int size = Math.min(pairs.length + 1, k);
    Row[] next = new Row[size];
    System.arraycopy(pairs, 0, next, 0, at);
    next[at] = Row.of(time, value);
    System.arraycopy(pairs, at, next, at + 1, size - at - 1);
    return next;
  }

  protected void add(Row acc, Long time, V value, Integer k) {
    if (time == null || value == null || k == null || k < 1) {
      return;
    }
    acc.setField(0, k);
    acc.setField(1, insert((Row[]) acc.getField(1), time, value, k));
  }

  public void merge(Row acc, Iterable<Row> others) {
    int k = (Integer) acc.getField(0);
    Row[] pairs = (Row[]) acc.getField(1);
    for (Row other : others) {
      k = Math.max(k, (Integer) other.getField(0));
      for (Row pair : (Row[]) other.getField(1)) {
        pairs = insert(pairs, (Long) pair.getField(0), pair.getField(1), k);
      }
    }
    acc.setField(0, k);
    acc.setField(1, pairs);
  }

  @Override
  public Row[] getValue(Row acc) {
    Row[] pairs = (Row[]) acc.getField(1);
    return pairs.length == 0 ? null : pairs;
  }

  /** As Python compares floats: -0.0 equals 0.0 (no NaN: the validator rejects it). */
  static int compareDoubles(double a, double b) {
    return a < b ? -1 : a > b ? 1 : 0;
  }

  /** Python's order of str: by code point (Java's compareTo orders UTF-16 units). */
  static int compareCodePoints(String a, String b) {
    int i = 0;
    int j = 0;
    while (i < a.length() && j < b.length()) {
      int x = a.codePointAt(i);
      int y = b.codePointAt(j);
      if (x != y) {
        return Integer.compare(x, y);
      }
      i += Character.charCount(x);
      j += Character.charCount(y);
    }
    return Boolean.compare(i < a.length(), j < b.length());
  }
}
