package lfp.speed;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.types.Row;

/** {@link LatestPairs} oldest first, of DOUBLE values: the "first" and "first_k" twin. */
@FunctionHint(
    input = {@DataTypeHint("BIGINT"), @DataTypeHint("DOUBLE"), @DataTypeHint("INT")},
    accumulator = @DataTypeHint("ROW<k INT, pairs ARRAY<ROW<t BIGINT, v DOUBLE>>>"),
    output = @DataTypeHint("ARRAY<ROW<t BIGINT, v DOUBLE>>"))
public class EarliestDoubles extends LatestPairs<Double> {

  public EarliestDoubles() {
    super(true);
  }

  public void accumulate(Row acc, Long time, Double value, Integer k) {
    add(acc, time, value, k);
  }
}
