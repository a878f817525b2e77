package lfp.speed;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.types.Row;

/** {@link LatestPairs} of DOUBLE values. */
@FunctionHint(
    input = {@DataTypeHint("BIGINT"), @DataTypeHint("DOUBLE"), @DataTypeHint("INT")},
    accumulator = @DataTypeHint("ROW<k INT, pairs ARRAY<ROW<t BIGINT, v DOUBLE>>>"),
    output = @DataTypeHint("ARRAY<ROW<t BIGINT, v DOUBLE>>"))
public class LatestDoubles extends LatestPairs<Double> {

  public void accumulate(Row acc, Long time, Double value, Integer k) {
    add(acc, time, value, k);
  }
}
