package lfp.speed;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.types.Row;

/** {@link RankedValues} of DOUBLE values. */
@FunctionHint(
    input = {@DataTypeHint("DOUBLE"), @DataTypeHint("INT"), @DataTypeHint("BOOLEAN")},
    accumulator = @DataTypeHint("ROW<k INT, largest BOOLEAN, kept ARRAY<DOUBLE>>"),
    output = @DataTypeHint("STRING"))
public class RankedDoubles extends RankedValues<Double> {

  public RankedDoubles() {
    super(new Double[0]);
  }

  /**
   * Double.toString has as many digits as it takes to tell the double from its neighbours,
   * so it parses back to the same double, and always a '.' or an exponent, so Python reads
   * a float; values are finite (the validator rejects the others).
   */
  @Override
  protected void appendJson(StringBuilder json, Double value) {
    json.append(Double.toString(value));
  }

  public void accumulate(Row acc, Double value, Integer k, Boolean largest) {
    add(acc, value, k, largest);
  }
}
