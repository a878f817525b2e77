package lfp.speed;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.types.Row;

/** {@link LatestPairs} oldest first, of BIGINT values: the "first" and "first_k" twin. */
@FunctionHint(
    input = {@DataTypeHint("BIGINT"), @DataTypeHint("BIGINT"), @DataTypeHint("INT")},
    accumulator = @DataTypeHint("ROW<k INT, pairs ARRAY<ROW<t BIGINT, v BIGINT>>>"),
    output = @DataTypeHint("ARRAY<ROW<t BIGINT, v BIGINT>>"))
public class EarliestLongs extends LatestPairs<Long> {

  public EarliestLongs() {
    super(true);
  }

  public void accumulate(Row acc, Long time, Long value, Integer k) {
    add(acc, time, value, k);
  }
}
