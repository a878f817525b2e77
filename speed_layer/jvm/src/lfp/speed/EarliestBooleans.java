package lfp.speed;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.types.Row;

/** {@link LatestPairs} oldest first, of BOOLEAN values: the "first" and "first_k" twin. */
@FunctionHint(
    input = {@DataTypeHint("BIGINT"), @DataTypeHint("BOOLEAN"), @DataTypeHint("INT")},
    accumulator = @DataTypeHint("ROW<k INT, pairs ARRAY<ROW<t BIGINT, v BOOLEAN>>>"),
    output = @DataTypeHint("ARRAY<ROW<t BIGINT, v BOOLEAN>>"))
public class EarliestBooleans extends LatestPairs<Boolean> {

  public EarliestBooleans() {
    super(true);
  }

  public void accumulate(Row acc, Long time, Boolean value, Integer k) {
    add(acc, time, value, k);
  }
}
