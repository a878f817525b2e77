package lfp.speed;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.table.functions.AggregateFunction;
import org.apache.flink.types.Row;

/**
 * The HLL registers of a tile's values: the engine form of the algebra's "hll" partial
 * (feature_core/sketches.py: registers_of). Each value updates one register as it comes,
 * so a tile's state is its 2^p register bytes however many values it sees; the Redis
 * writer encodes the emitted registers with the algebra's own encoder.
 *
 * <p>Emits null for a tile without values, as the algebra's partial is null then.
 */
@FunctionHint(
    input = {@DataTypeHint("STRING"), @DataTypeHint("INT")},
    accumulator = @DataTypeHint("ROW<registers BYTES>"),
    output = @DataTypeHint("BYTES"))
public class SketchRegisters extends AggregateFunction<byte[], Row> {

  @Override
  public Row createAccumulator() {
    return Row.of((Object) null);
  }

  /** The register index and rank of one value at precision p, as registers_of has them. */
  static int[] indexAndRank(String value, int precision) {
    long h = Blake2b.hash64(value);
    int width = 64 - precision;
    int index = (int) (h >>> width);
    long rest = h & ((1L << width) - 1);
    int rank = width - (64 - Long.numberOfLeadingZeros(rest)) + 1;
    return new int[] {index, rank};
  }

  public void accumulate(Row acc, String value, Integer precision) {
    if (value == null || precision == null) {
      return;
    }
    byte[] registers = (byte[]) acc.getField(0);
    if (registers == null) {
      registers = new byte[1 << precision];
      acc.setField(0, registers);
    }
    int[] slot = indexAndRank(value, precision);
    if (slot[1] > registers[slot[0]]) {
      registers[slot[0]] = (byte) slot[1];
    }
  }

  public void merge(Row acc, Iterable<Row> others) {
    byte[] registers = (byte[]) acc.getField(0);
    for (Row other : others) {
      byte[] theirs = (byte[]) other.getField(0);
      if (theirs == null) {
        continue;
      }
      if (registers == null) {
        registers = theirs.clone();
        continue;
      }
      for (int i = 0; i < registers.length; i++) {
        if (theirs[i] > registers[i]) {
          registers[i] = theirs[i];
        }
      }
    }
    acc.setField(0, registers);
  }

  /**
   * A copy: accumulate updates the registers in place, and Flink compares a tile's value
   * before and after a batch of events to decide whether to emit it. Handing out the
   * array itself made both the same object, so an update could be taken for no change
   * and never reach Redis.
   */
  @Override
  public byte[] getValue(Row acc) {
    byte[] registers = (byte[]) acc.getField(0);
    return registers == null ? null : registers.clone();
  }

  /** For the parity test: each stdin line (a value) -> "index rank" at precision args[0]. */
  public static void main(String[] args) throws java.io.IOException {
    int precision = Integer.parseInt(args[0]);
    java.io.BufferedReader in =
        new java.io.BufferedReader(
            new java.io.InputStreamReader(System.in, java.nio.charset.StandardCharsets.UTF_8));
    StringBuilder out = new StringBuilder();
    for (String line = in.readLine(); line != null; line = in.readLine()) {
      int[] slot = indexAndRank(line, precision);
      out.append(slot[0]).append(' ').append(slot[1]).append('\n');
    }
    System.out.print(out);
  }
}
