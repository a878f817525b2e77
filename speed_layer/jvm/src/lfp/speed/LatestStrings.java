package lfp.speed;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.types.Row;

/** {@link LatestPairs} of STRING values. */
@FunctionHint(
    input = {@DataTypeHint("BIGINT"), @DataTypeHint("STRING"), @DataTypeHint("INT")},
    accumulator = @DataTypeHint("ROW<k INT, pairs ARRAY<ROW<t BIGINT, v STRING>>>"),
    output = @DataTypeHint("ARRAY<ROW<t BIGINT, v STRING>>"))
public class LatestStrings extends LatestPairs<String> {

  public void accumulate(Row acc, Long time, String value, Integer k) {
    add(acc, time, value, k);
  }
}
