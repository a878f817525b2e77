package lfp.speed;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.types.Row;

/** {@link CountsByValue} of BOOLEAN values (false before true). */
@FunctionHint(
    input = {@DataTypeHint("BOOLEAN"), @DataTypeHint("INT")},
    accumulator = @DataTypeHint("ROW<max_keys INT, vs ARRAY<BOOLEAN>, cs ARRAY<BIGINT>>"),
    output = @DataTypeHint("STRING"))
public class CountsByBooleans extends CountsByValue<Boolean> {

  @Override
  protected Boolean[] newValues(int size) {
    return new Boolean[size];
  }

  @Override
  protected void appendJson(StringBuilder json, Boolean value) {
    json.append(value.booleanValue() ? "true" : "false");
  }

  @Override
  protected Boolean fromJson(JsonNode node) {
    return node.isNull() ? null : node.booleanValue();
  }

  public void accumulate(Row acc, Boolean value, Integer maxKeys) {
    add(acc, value, maxKeys);
  }
}
