package lfp.speed;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.types.Row;

/** {@link CountsByValue} of BIGINT values. */
@FunctionHint(
    input = {@DataTypeHint("BIGINT"), @DataTypeHint("INT")},
    accumulator = @DataTypeHint("ROW<max_keys INT, vs ARRAY<BIGINT>, cs ARRAY<BIGINT>>"),
    output = @DataTypeHint("STRING"))
public class CountsByLongs extends CountsByValue<Long> {

  @Override
  protected Long[] newValues(int size) {
    return new Long[size];
  }

  @Override
  protected void appendJson(StringBuilder json, Long value) {
    json.append(value.longValue());
  }

  @Override
  protected Long fromJson(JsonNode node) {
    return node.isNull() ? null : node.longValue();
  }

  public void accumulate(Row acc, Long value, Integer maxKeys) {
    add(acc, value, maxKeys);
  }
}
