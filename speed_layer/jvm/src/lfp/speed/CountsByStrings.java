package lfp.speed;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.types.Row;

/** {@link CountsByValue} of STRING values, ordered by code point as Python orders str. */
@FunctionHint(
    input = {@DataTypeHint("STRING"), @DataTypeHint("INT")},
    accumulator = @DataTypeHint("ROW<max_keys INT, vs ARRAY<STRING>, cs ARRAY<BIGINT>>"),
    output = @DataTypeHint("STRING"))
public class CountsByStrings extends CountsByValue<String> {

  @Override
  protected int compareValues(String a, String b) {
    return LatestPairs.compareCodePoints(a, b);
  }

  @Override
  protected String[] newValues(int size) {
    return new String[size];
  }

  @Override
  protected void appendJson(StringBuilder json, String value) {
    TileSink.string(json, value);
  }

  @Override
  protected String fromJson(JsonNode node) {
    return node.isNull() ? null : node.textValue();
  }

  public void accumulate(Row acc, String value, Integer maxKeys) {
    add(acc, value, maxKeys);
  }
}
