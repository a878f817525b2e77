package lfp.speed;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.types.Row;

/** {@link RankedValues} of STRING values. */
@FunctionHint(
    input = {@DataTypeHint("STRING"), @DataTypeHint("INT"), @DataTypeHint("BOOLEAN")},
    accumulator = @DataTypeHint("ROW<k INT, largest BOOLEAN, kept ARRAY<STRING>>"),
    output = @DataTypeHint("STRING"))
public class RankedStrings extends RankedValues<String> {

  public RankedStrings() {
    super(new String[0]);
  }

  /** As the tile sink writes strings: quotes, backslashes and control characters escaped. */
  @Override
  protected void appendJson(StringBuilder json, String value) {
    TileSink.string(json, value);
  }

  public void accumulate(Row acc, String value, Integer k, Boolean largest) {
    add(acc, value, k, largest);
  }
}
