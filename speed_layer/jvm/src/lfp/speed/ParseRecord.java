package lfp.speed;

import java.io.IOException;
import java.math.BigDecimal;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.time.DateTimeException;
import java.time.LocalDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.table.api.DataTypes;
import org.apache.flink.table.api.ValidationException;
import org.apache.flink.table.catalog.DataTypeFactory;
import org.apache.flink.table.functions.TableFunction;
import org.apache.flink.table.types.DataType;
import org.apache.flink.table.types.inference.StaticArgument;
import org.apache.flink.table.types.inference.TypeInference;
import org.apache.flink.types.Row;

/**
 * A source's validator in the JVM: a raw Kafka value -> one row of status and fields, so
 * the speed job parses its records without a crossing to Python per record.
 *
 * <p>The shared Python validator (feature_core/sources.py) stays the specification. This
 * class decides only what it can decide exactly as that validator does: a record it is not
 * sure about (a JSON syntax error, non-UTF-8 bytes, a duplicate key, a \\u escape, an integer
 * beyond 64 bits, an infinite number, an ISO-8601 form outside the common one) gets the
 * status {@code python} and is parsed by the Python validator instead. The second argument
 * is the source's declaration as JSON (speed_layer/sql.py: parser_spec), a literal, so the
 * row type is known when the query is planned.
 */
public class ParseRecord extends TableFunction<Row> {

  public static final String OK = "ok";
  public static final String LATE = "late";
  public static final String INVALID = "invalid";
  public static final String PYTHON = "python";

  private transient String specText;
  private transient Spec spec;

  public void eval(byte[] raw, String specJson) {
    collect(spec(specJson).parseAny(raw, System.currentTimeMillis()));
  }

  private Spec spec(String text) {
    if (spec == null || !text.equals(specText)) {
      spec = Spec.of(text);
      specText = text;
    }
    return spec;
  }

  @Override
  public TypeInference getTypeInference(DataTypeFactory typeFactory) {
    return TypeInference.newBuilder()
        .staticArguments(
            StaticArgument.scalar("raw", DataTypes.BYTES(), false),
            StaticArgument.scalar("spec", DataTypes.STRING(), false))
        .outputTypeStrategy(
            call -> {
              String text =
                  call.getArgumentValue(1, String.class)
                      .orElseThrow(
                          () -> new ValidationException("the source's spec must be a literal"));
              return Optional.of(Spec.of(text).rowType());
            })
        .build();
  }

  // --- the declaration --------------------------------------------------------------------

  enum Type {
    STRING,
    INTEGER,
    FLOAT,
    BOOLEAN,
    TIMESTAMP;

    DataType sql() {
      switch (this) {
        case STRING:
          return DataTypes.STRING();
        case FLOAT:
          return DataTypes.DOUBLE();
        case BOOLEAN:
          return DataTypes.BOOLEAN();
        default:
          return DataTypes.BIGINT();
      }
    }
  }

  /** One declared field with its constraints (bounds exact, as Python compares them). */
  static final class Field {
    final String name;
    final Type type;
    final boolean required;
    final Set<Object> values; // null: any value
    final BigDecimal min;
    final BigDecimal max;
    final Integer minLength;
    final Integer maxLength;

    Field(JsonNode node) {
      name = node.get("name").asText();
      type = Type.valueOf(node.get("type").asText().toUpperCase());
      required = node.path("required").asBoolean(false);
      values = node.hasNonNull("values") ? valueSet(node.get("values")) : null;
      min = bound(node.get("min"));
      max = bound(node.get("max"));
      minLength = node.hasNonNull("min_length") ? node.get("min_length").asInt() : null;
      maxLength = node.hasNonNull("max_length") ? node.get("max_length").asInt() : null;
    }

    /** A bound as Python holds it: an integer exactly, a float as its exact double. */
    private static BigDecimal bound(JsonNode node) {
      if (node == null || node.isNull()) {
        return null;
      }
      return node.isIntegralNumber() ? new BigDecimal(node.bigIntegerValue()) : new BigDecimal(node.doubleValue());
    }

    /** Whether a checked value meets the constraints. */
    boolean meets(Object value) {
      if (values != null && !values.contains(value)) {
        return false;
      }
      if (min != null || max != null) {
        BigDecimal exact =
            value instanceof Double ? new BigDecimal((Double) value) : BigDecimal.valueOf((Long) value);
        if (min != null && exact.compareTo(min) < 0 || max != null && exact.compareTo(max) > 0) {
          return false;
        }
      }
      if (minLength != null || maxLength != null) {
        String text = (String) value;
        int length = text.codePointCount(0, text.length());
        return (minLength == null || length >= minLength) && (maxLength == null || length <= maxLength);
      }
      return true;
    }
  }

  /** Typed values (Python's typed(): True never matches 1): strings, longs, booleans. */
  static Set<Object> valueSet(JsonNode array) {
    Set<Object> set = new HashSet<>();
    for (JsonNode value : array) {
      if (value.isTextual()) {
        set.add(value.asText());
      } else if (value.isBoolean()) {
        set.add(value.asBoolean());
      } else if (value.isIntegralNumber() && value.canConvertToLong()) {
        set.add(value.asLong());
      } else {
        throw new IllegalArgumentException("unsupported allowed value " + value);
      }
    }
    return set;
  }

  /**
   * A RequiredWhen rule: {@code field} is required when {@code when} has one of {@code
   * values}, and with {@code only} must be absent otherwise.
   */
  static final class RequiredWhen {
    final int field;
    final int when;
    final Set<Object> values;
    final boolean only;

    RequiredWhen(JsonNode node, Map<String, Integer> index) {
      field = index.get(node.get("field").asText());
      when = index.get(node.get("when").asText());
      values = valueSet(node.get("values"));
      only = node.path("only").asBoolean(false);
    }

    boolean holds(Object[] record) {
      Object whenValue = record[when];
      if (whenValue != null && values.contains(whenValue)) {
        return record[field] != null;
      }
      return !only || record[field] == null;
    }
  }

  static final class Spec {
    private static final ObjectMapper MAPPER = new ObjectMapper();
    private static final JsonFactory JSON = new JsonFactory();

    final Field[] fields;
    final Map<String, Integer> index = new HashMap<>();
    final int eventTime;
    final long latenessMs;
    final long futureSkewMs;
    final RequiredWhen[] rules;

    private Spec(JsonNode node) {
      List<Field> declared = new ArrayList<>();
      for (JsonNode field : node.get("fields")) {
        index.put(field.get("name").asText(), declared.size());
        declared.add(new Field(field));
      }
      fields = declared.toArray(new Field[0]);
      eventTime = index.get(node.get("event_time").asText());
      latenessMs = node.get("lateness_ms").asLong();
      futureSkewMs = node.get("future_skew_ms").asLong();
      List<RequiredWhen> parsedRules = new ArrayList<>();
      for (JsonNode rule : node.path("rules")) {
        parsedRules.add(new RequiredWhen(rule, index));
      }
      rules = parsedRules.toArray(new RequiredWhen[0]);
    }

    static Spec of(String text) {
      try {
        return new Spec(MAPPER.readTree(text));
      } catch (IOException | RuntimeException error) {
        throw new ValidationException("not a source spec: " + error.getMessage(), error);
      }
    }

    DataType rowType() {
      DataTypes.Field[] columns = new DataTypes.Field[fields.length + 1];
      columns[0] = DataTypes.FIELD("_status", DataTypes.STRING());
      for (int i = 0; i < fields.length; i++) {
        columns[i + 1] = DataTypes.FIELD(fields[i].name, fields[i].type.sql());
      }
      return DataTypes.ROW(columns);
    }

    private Row verdict(String status) {
      Row row = new Row(fields.length + 1);
      row.setField(0, status);
      return row;
    }

    /**
     * {@link #parse}, for any bytes at all: whatever it cannot decide (a failure of this
     * class, a stack overflow on some nesting) goes to the Python validator, so no record
     * ever fails the job.
     */
    Row parseAny(byte[] raw, long nowMs) {
      try {
        return parse(raw, nowMs);
      } catch (RuntimeException | StackOverflowError error) {
        return verdict(PYTHON);
      }
    }

    /** A raw value -> (status, fields...), as the Python validator decides it at now. */
    Row parse(byte[] raw, long nowMs) {
      if (raw == null) {
        return verdict(INVALID);
      }
      if (!plain(raw)) {
        return verdict(PYTHON);
      }
      Object[] record = new Object[fields.length];
      boolean[] seen = new boolean[fields.length];
      boolean wrongType = false;
      try (JsonParser parser = JSON.createParser(raw)) {
        if (parser.nextToken() != JsonToken.START_OBJECT) {
          return verdict(INVALID); // valid or not, anything but an object is rejected
        }
        JsonToken token;
        while ((token = parser.nextToken()) == JsonToken.FIELD_NAME) {
          Integer i = index.get(parser.currentName());
          token = parser.nextToken();
          if (i == null) {
            parser.skipChildren();
            continue;
          }
          if (seen[i]) {
            return verdict(PYTHON); // the last value wins there: leave it to Python
          }
          seen[i] = true;
          Object value = read(parser, token, fields[i].type);
          if (value == PYTHON) {
            return verdict(PYTHON);
          }
          if (value == INVALID) {
            wrongType = true;
            parser.skipChildren();
          } else {
            record[i] = value;
          }
        }
        if (token != JsonToken.END_OBJECT || parser.nextToken() != null) {
          return verdict(PYTHON);
        }
      } catch (IOException | RuntimeException error) {
        return verdict(PYTHON); // malformed JSON: the Python validator says why
      }
      if (wrongType || !valid(record, nowMs)) {
        return verdict(INVALID);
      }
      long time = (Long) record[eventTime];
      Row row = verdict(time < nowMs - latenessMs ? LATE : OK);
      for (int i = 0; i < record.length; i++) {
        row.setField(i + 1, record[i]);
      }
      return row;
    }

    private boolean valid(Object[] record, long nowMs) {
      for (int i = 0; i < fields.length; i++) {
        Object value = record[i];
        if (value == null ? fields[i].required : !fields[i].meets(value)) {
          return false;
        }
      }
      if ((Long) record[eventTime] > nowMs + futureSkewMs) {
        return false;
      }
      for (RequiredWhen rule : rules) {
        if (!rule.holds(record)) {
          return false;
        }
      }
      return true;
    }
  }

  /**
   * Whether the bytes are what this class parses exactly as orjson does: UTF-8 without a
   * byte-order mark, control characters or \\u escapes (orjson rejects lone surrogates in
   * them).
   */
  static boolean plain(byte[] raw) {
    boolean ascii = true;
    for (int i = 0; i < raw.length; i++) {
      byte b = raw[i];
      if (b < 0) {
        ascii = false;
      } else if (b < 0x20 && b != '\t' && b != '\n' && b != '\r') {
        return false; // never valid JSON (and it would set Jackson guessing UTF-16 or 32)
      } else if (b == '\\' && i + 1 < raw.length && raw[i + 1] == 'u') {
        return false;
      }
    }
    if (ascii) {
      return true;
    }
    if (raw.length >= 3 && raw[0] == (byte) 0xEF && raw[1] == (byte) 0xBB && raw[2] == (byte) 0xBF) {
      return false;
    }
    try {
      StandardCharsets.UTF_8
          .newDecoder()
          .onMalformedInput(CodingErrorAction.REPORT)
          .onUnmappableCharacter(CodingErrorAction.REPORT)
          .decode(ByteBuffer.wrap(raw));
      return true;
    } catch (CharacterCodingException error) {
      return false;
    }
  }

  /** A field's value: the checked value, null, INVALID (wrong type) or PYTHON (unsure). */
  static Object read(JsonParser parser, JsonToken token, Type type) throws IOException {
    if (token == JsonToken.VALUE_NULL) {
      return null;
    }
    switch (type) {
      case STRING:
        return token == JsonToken.VALUE_STRING ? parser.getText() : INVALID;
      case BOOLEAN:
        if (token == JsonToken.VALUE_TRUE || token == JsonToken.VALUE_FALSE) {
          return token == JsonToken.VALUE_TRUE;
        }
        return INVALID;
      case INTEGER:
        if (token == JsonToken.VALUE_NUMBER_INT) {
          return longOrPython(parser);
        }
        return INVALID;
      case FLOAT:
        if (token == JsonToken.VALUE_NUMBER_INT) {
          Object whole = longOrPython(parser);
          return whole == PYTHON ? PYTHON : (Object) (double) (Long) whole;
        }
        if (token == JsonToken.VALUE_NUMBER_FLOAT) {
          double number = parser.getDoubleValue();
          return Double.isInfinite(number) ? PYTHON : (Object) number;
        }
        return INVALID;
      default: // TIMESTAMP
        if (token == JsonToken.VALUE_NUMBER_INT) {
          Object ms = longOrPython(parser);
          return ms == PYTHON || (Long) ms > 0 ? ms : INVALID;
        }
        if (token == JsonToken.VALUE_STRING) {
          return isoToMs(parser.getText());
        }
        return INVALID;
    }
  }

  private static Object longOrPython(JsonParser parser) throws IOException {
    JsonParser.NumberType kind = parser.getNumberType();
    return kind == JsonParser.NumberType.INT || kind == JsonParser.NumberType.LONG
        ? (Object) parser.getLongValue()
        : PYTHON;
  }

  private static final Pattern ISO =
      Pattern.compile(
          "(\\d{4})-(\\d{2})-(\\d{2})T(\\d{2}):(\\d{2}):(\\d{2})(?:\\.(\\d{3}|\\d{6}))?"
              + "(?:(Z)|([+-])(\\d{2}):(\\d{2}))");

  /**
   * The common ISO-8601 form (date T time, 3 or 6 fractional digits, Z or +hh:mm) as
   * milliseconds, computed as Python's int(datetime.fromisoformat(text).timestamp() * 1000)
   * is; PYTHON for any other form, INVALID for a time not after the epoch.
   */
  static Object isoToMs(String text) {
    Matcher m = ISO.matcher(text);
    if (!m.matches()) {
      return PYTHON;
    }
    try {
      int year = Integer.parseInt(m.group(1));
      int hour = Integer.parseInt(m.group(4));
      int minute = Integer.parseInt(m.group(5));
      int second = Integer.parseInt(m.group(6));
      if (year < 1 || hour > 23 || minute > 59 || second > 59) {
        return PYTHON;
      }
      String fraction = m.group(7);
      int micros = fraction == null ? 0 : Integer.parseInt(fraction.length() == 3 ? fraction + "000" : fraction);
      int offsetSeconds = 0;
      if (m.group(8) == null) {
        int offsetHours = Integer.parseInt(m.group(10));
        int offsetMinutes = Integer.parseInt(m.group(11));
        if (offsetHours > 23 || offsetMinutes > 59) {
          return PYTHON;
        }
        offsetSeconds = (offsetHours * 3600 + offsetMinutes * 60) * (m.group(9).equals("-") ? -1 : 1);
      }
      LocalDateTime local =
          LocalDateTime.of(year, Integer.parseInt(m.group(2)), Integer.parseInt(m.group(3)), hour, minute, second);
      long epochSeconds = local.toEpochSecond(ZoneOffset.ofTotalSeconds(offsetSeconds));
      long totalMicros = Math.addExact(Math.multiplyExact(epochSeconds, 1_000_000L), micros);
      if (Math.abs(totalMicros) >= (1L << 53)) {
        return PYTHON; // Python divides the exact integer; a double would round it first
      }
      long ms = (long) ((double) totalMicros / 1e6 * 1000.0);
      return ms > 0 ? (Object) ms : INVALID;
    } catch (DateTimeException | ArithmeticException error) {
      return PYTHON; // no such date (February 30th): Python says so
    }
  }

  /**
   * For the parity test: args[0] is a file holding the spec; each stdin line is "now_ms
   * base64(raw)" (base64 "-" for a null value) -> a JSON array [status, field...].
   */
  public static void main(String[] args) throws IOException {
    Spec spec = Spec.of(new String(java.nio.file.Files.readAllBytes(java.nio.file.Paths.get(args[0])), StandardCharsets.UTF_8));
    ObjectMapper mapper = new ObjectMapper();
    java.io.BufferedReader in =
        new java.io.BufferedReader(new java.io.InputStreamReader(System.in, StandardCharsets.UTF_8));
    java.io.PrintStream out = new java.io.PrintStream(System.out, false, "UTF-8");
    for (String line = in.readLine(); line != null; line = in.readLine()) {
      String[] parts = line.split(" ", 2);
      byte[] raw = parts[1].equals("-") ? null : java.util.Base64.getDecoder().decode(parts[1]);
      Row row = spec.parseAny(raw, Long.parseLong(parts[0]));
      Object[] values = new Object[row.getArity()];
      for (int i = 0; i < values.length; i++) {
        values[i] = row.getField(i);
      }
      out.println(mapper.writeValueAsString(values));
      out.flush();
    }
  }
}
