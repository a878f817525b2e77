package lfp.speed;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.types.Row;

/** {@link LatestPairs} of BOOLEAN values. */
@FunctionHint(
    input = {@DataTypeHint("BIGINT"), @DataTypeHint("BOOLEAN"), @DataTypeHint("INT")},
    accumulator = @DataTypeHint("ROW<k INT, pairs ARRAY<ROW<t BIGINT, v BOOLEAN>>>"),
    output = @DataTypeHint("ARRAY<ROW<t BIGINT, v BOOLEAN>>"))
public class LatestBooleans extends LatestPairs<Boolean> {

  public void accumulate(Row acc, Long time, Boolean value, Integer k) {
    add(acc, time, value, k);
  }
}
