package lfp.speed;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.types.Row;

/** {@link RankedValues} of BIGINT values (integer and timestamp fields). */
@FunctionHint(
    input = {@DataTypeHint("BIGINT"), @DataTypeHint("INT"), @DataTypeHint("BOOLEAN")},
    accumulator = @DataTypeHint("ROW<k INT, largest BOOLEAN, kept ARRAY<BIGINT>>"),
    output = @DataTypeHint("STRING"))
public class RankedLongs extends RankedValues<Long> {

  public RankedLongs() {
    super(new Long[0]);
  }

  @Override
  protected void appendJson(StringBuilder json, Long value) {
    json.append(value.longValue());
  }

  public void accumulate(Row acc, Long value, Integer k, Boolean largest) {
    add(acc, value, k, largest);
  }
}
