package lfp.speed;

import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.ByteArrayOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.URI;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.util.ArrayList;
import java.util.List;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.SSLSocketFactory;
import javax.net.ssl.TrustManagerFactory;

/**
 * Pipelined Redis commands over one connection (RESP2), for the speed job's tile sink.
 *
 * <p>No Java Redis client is installable here (Maven Central is not reachable; Debian has
 * none), and the sink needs four commands, so it speaks the protocol itself: commands are
 * encoded into one buffer and sent in one write, then every reply is read. Every command the
 * sink sends is idempotent (whole values, a TTL, a max), so a batch that failed halfway is
 * sent again whole after reconnecting. URLs: {@code redis[s]://[[user]:password@]host[:port][/db]}.
 *
 * <p>Over {@code rediss://} the server's certificate must be trusted (the JVM's CAs, or the
 * PEM file of the URL's {@code ssl_ca_certs} parameter) and name the host connected to
 * (unless the URL says {@code ssl_check_hostname=false}), as redis-py is told to check.
 * Errors name the URL through {@link #redact}: never its password.
 */
final class RedisPipeline implements RedisCommands {

  /** Connect and read timeout: a node that does not answer in this long is down. */
  private static final int TIMEOUT_MS = 10_000;

  private final String host;
  private final int port;
  private final boolean tls;
  private final String user;
  private final String password;
  private final int db;
  private final String caFile;
  private final boolean checkHostname;
  private final ByteArrayOutputStream commands = new ByteArrayOutputStream();
  private int count;
  private Socket socket;
  private InputStream in;
  private OutputStream out;

  RedisPipeline(String url) {
    URI uri = parse(url);
    String scheme = uri.getScheme();
    if (!"redis".equals(scheme) && !"rediss".equals(scheme)) {
      throw new IllegalArgumentException(
          "LFP_REDIS_URL " + redact(url)
              + ": the speed job writes over redis:// or rediss:// URLs only");
    }
    tls = "rediss".equals(scheme);
    host = uri.getHost() == null ? "localhost" : uri.getHost();
    port = uri.getPort() < 0 ? 6379 : uri.getPort();
    String info = uri.getRawUserInfo();
    if (info == null) {
      user = null;
      password = null;
    } else {
      int colon = info.indexOf(':');
      String name = colon < 0 ? "" : decode(info.substring(0, colon));
      user = name.isEmpty() ? null : name;
      password = decode(colon < 0 ? info : info.substring(colon + 1));
    }
    String path = uri.getPath() == null ? "" : uri.getPath().replace("/", "");
    try {
      db = path.isEmpty() ? 0 : Integer.parseInt(path);
    } catch (NumberFormatException error) {
      throw new IllegalArgumentException(
          "LFP_REDIS_URL " + redact(url) + ": the database must be a number");
    }
    caFile = queryParameter(uri, "ssl_ca_certs");
    checkHostname = !"false".equalsIgnoreCase(queryParameter(uri, "ssl_check_hostname"));
  }

  /**
   * {@code url} safe to print: its password (if any) replaced by {@code ***}, as
   * feature_core/credentials.py's redact_url does. Text that is no URL comes back as is.
   */
  static String redact(String url) {
    int scheme = url.indexOf("://");
    if (scheme < 0) {
      return url;
    }
    int start = scheme + 3;
    int at = url.lastIndexOf('@');
    int colon = url.indexOf(':', start);
    if (at < start || colon < 0 || colon > at) {
      return url; // no user info, or a user name only: nothing secret
    }
    return url.substring(0, colon + 1) + "***" + url.substring(at);
  }

  /** {@code url} as a URI; an error names it redacted (Java's own would quote it whole). */
  static URI parse(String url) {
    try {
      return new URI(url);
    } catch (java.net.URISyntaxException error) {
      throw new IllegalArgumentException(
          "LFP_REDIS_URL " + redact(url) + " is not a valid URL (" + error.getReason()
              + " at index " + error.getIndex() + "): percent-encode the password's "
              + "special characters");
    }
  }

  /** A query parameter's decoded value, or null. */
  private static String queryParameter(URI uri, String name) {
    String query = uri.getRawQuery();
    if (query == null) {
      return null;
    }
    for (String pair : query.split("&")) {
      int equals = pair.indexOf('=');
      String key = decode(equals < 0 ? pair : pair.substring(0, equals));
      if (key.equals(name)) {
        return equals < 0 ? "" : decode(pair.substring(equals + 1));
      }
    }
    return null;
  }

  /**
   * A TLS socket over {@code plain}, checking the server's host name: Java's SSLSocket checks
   * none unless told to (endpoint identification "HTTPS", RFC 2818 host name rules).
   */
  static SSLSocket tlsSocket(
      SSLSocketFactory factory, Socket plain, String host, int port, boolean checkHostname)
      throws IOException {
    SSLSocket tls = (SSLSocket) factory.createSocket(plain, host, port, true);
    SSLParameters parameters = tls.getSSLParameters();
    if (checkHostname) {
      parameters.setEndpointIdentificationAlgorithm("HTTPS");
    }
    tls.setSSLParameters(parameters);
    return tls;
  }

  /** The JVM's default trust, or only the CAs of a PEM file. */
  static SSLSocketFactory tlsFactory(String caFile) throws IOException {
    if (caFile == null) {
      return (SSLSocketFactory) SSLSocketFactory.getDefault();
    }
    try (InputStream pem = Files.newInputStream(Path.of(caFile))) {
      KeyStore trusted = KeyStore.getInstance(KeyStore.getDefaultType());
      trusted.load(null, null);
      int n = 0;
      for (Certificate ca : CertificateFactory.getInstance("X.509").generateCertificates(pem)) {
        trusted.setCertificateEntry("ca" + n++, ca);
      }
      TrustManagerFactory trust =
          TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
      trust.init(trusted);
      SSLContext context = SSLContext.getInstance("TLS");
      context.init(null, trust.getTrustManagers(), null);
      return context.getSocketFactory();
    } catch (GeneralSecurityException error) {
      throw new IOException("ssl_ca_certs " + caFile + ": not a PEM file of CAs: " + error, error);
    }
  }

  /** This URL's query ({@code ?...}), for the URLs of other nodes of a cluster. */
  String query() {
    StringBuilder query = new StringBuilder();
    if (caFile != null) {
      query.append("ssl_ca_certs=");
      query.append(java.net.URLEncoder.encode(caFile, StandardCharsets.UTF_8));
    }
    if (!checkHostname) {
      query.append(query.length() == 0 ? "" : "&").append("ssl_check_hostname=false");
    }
    return query.length() == 0 ? "" : "?" + query;
  }

  private static String decode(String text) {
    return URLDecoder.decode(text, StandardCharsets.UTF_8);
  }

  /** Queues one command (sent by {@link #sync}). */
  @Override
  public void command(String... args) {
    writeHeader('*', args.length);
    for (String arg : args) {
      byte[] bytes = arg.getBytes(StandardCharsets.UTF_8);
      writeHeader('$', bytes.length);
      commands.write(bytes, 0, bytes.length);
      commands.write('\r');
      commands.write('\n');
    }
    count++;
  }

  private void writeHeader(char type, int n) {
    byte[] header = (type + Integer.toString(n) + "\r\n").getBytes(StandardCharsets.US_ASCII);
    commands.write(header, 0, header.length);
  }

  int pending() {
    return count;
  }

  /**
   * Sends the queued commands and reads their replies; retried whole (after reconnecting)
   * until {@code giveUpMs} has passed, then the last error is thrown. Redis error replies
   * are not retried (they say the command is wrong), except those of a server that cannot
   * take commands yet ({@link RedisError#retryable}): a restarted Redis answers LOADING
   * to every command until its append-only file is read. Failing the sink on it made
   * Flink restart the job from its last checkpoint, and the replay upserted tiles older
   * than Redis held (values served with events missing) until it caught up.
   */
  @Override
  public void sync(long giveUpMs) throws IOException, InterruptedException {
    if (count == 0) {
      return;
    }
    long deadline = System.currentTimeMillis() + giveUpMs;
    long backoffMs = 100;
    while (true) {
      try {
        send();
        commands.reset();
        count = 0;
        return;
      } catch (RedisError error) {
        if (!error.retryable() || System.currentTimeMillis() + backoffMs > deadline) {
          commands.reset();
          count = 0;
          throw error;
        }
        // Every reply was read: the connection is in step; the batch is sent again whole.
        Thread.sleep(backoffMs);
        backoffMs = Math.min(backoffMs * 2, 2000);
      } catch (IOException error) {
        close();
        if (System.currentTimeMillis() + backoffMs > deadline) {
          throw new IOException(
              "Redis at " + host + ":" + port + " (LFP_REDIS_URL) did not take the speed "
                  + "job's writes: " + error.getMessage(), error);
        }
        Thread.sleep(backoffMs);
        backoffMs = Math.min(backoffMs * 2, 2000);
      }
    }
  }

  /** Writes the queued commands, without reading their replies (see {@link #receive}). */
  void transmit() throws IOException {
    if (count == 0) {
      return;
    }
    try {
      if (socket == null) {
        connect();
      }
      commands.writeTo(out);
      out.flush();
    } catch (IOException error) {
      discard();
      throw error;
    }
  }

  /** Reads the replies of what {@link #transmit} wrote; the first error reply is thrown. */
  void receive() throws IOException {
    for (RedisError error : receiveEach()) {
      if (error != null) {
        throw error;
      }
    }
  }

  /**
   * Reads the replies of what {@link #transmit} wrote: each command's error reply, or null
   * where it succeeded (a cluster answers some commands of a batch with a redirect).
   */
  List<RedisError> receiveEach() throws IOException {
    try {
      List<RedisError> errors = new ArrayList<>(count);
      for (int i = 0; i < count; i++) {
        errors.add(readReply());
      }
      return errors;
    } catch (IOException error) {
      close();
      throw error;
    } catch (RuntimeException error) {
      // A reply that does not parse: what follows it cannot be matched to commands.
      close();
      throw new IOException("unreadable Redis reply: " + error, error);
    } finally {
      commands.reset();
      count = 0;
    }
  }

  /** Forgets the queued commands and the connection (its replies may be unread). */
  void discard() {
    close();
    commands.reset();
    count = 0;
  }

  private void send() throws IOException {
    if (socket == null) {
      connect();
    }
    commands.writeTo(out);
    out.flush();
    RedisError first = null;
    for (int i = 0; i < count; i++) {
      RedisError error = readReply();
      if (first == null) {
        first = error;
      }
    }
    if (first != null) {
      throw first;
    }
  }

  private void connect() throws IOException {
    // A bounded connect: an unreachable node fails the attempt in seconds (and the retry
    // policy takes over) instead of waiting out the kernel's SYN retries.
    Socket plain = new Socket();
    try {
      plain.connect(new InetSocketAddress(host, port), TIMEOUT_MS);
      socket = tls ? tlsSocket(tlsFactory(caFile), plain, host, port, checkHostname) : plain;
      socket.setTcpNoDelay(true);
      socket.setSoTimeout(TIMEOUT_MS);
      in = new BufferedInputStream(socket.getInputStream(), 1 << 16);
      out = new BufferedOutputStream(socket.getOutputStream(), 1 << 16);
      authenticate();
    } catch (IOException | RuntimeException error) {
      // Not half connected: a socket that failed its handshake or AUTH is never reused.
      close();
      try {
        plain.close();
      } catch (IOException ignored) {
        // already broken
      }
      throw error;
    }
  }

  /** AUTH and SELECT on a new connection, ahead of what was queued. */
  private void authenticate() throws IOException {
    ByteArrayOutputStream queued = new ByteArrayOutputStream();
    commands.writeTo(queued);
    int queuedCount = count;
    commands.reset();
    count = 0;
    if (password != null) {
      if (user != null) {
        command("AUTH", user, password);
      } else {
        command("AUTH", password);
      }
    }
    if (db != 0) {
      command("SELECT", Integer.toString(db));
    }
    try {
      send();
    } finally {
      commands.reset();
      count = queuedCount;
      queued.writeTo(commands);
    }
  }

  /**
   * Sends one command now (nothing may be queued) and returns its reply: a String, a Long,
   * null, or a List of those; an error reply is thrown.
   */
  Object call(String... args) throws IOException {
    if (count != 0) {
      throw new IllegalStateException("call() with commands queued");
    }
    if (socket == null) {
      connect();
    }
    command(args);
    try {
      commands.writeTo(out);
      out.flush();
      Object reply = readValue();
      if (reply instanceof RedisError) {
        throw (RedisError) reply;
      }
      return reply;
    } catch (IOException error) {
      close();
      throw error;
    } finally {
      commands.reset();
      count = 0;
    }
  }

  /** One reply as a value (see {@link #call}); an error reply is returned, not thrown. */
  private Object readValue() throws IOException {
    int type = in.read();
    String line = readLine();
    switch (type) {
      case '+':
        return line;
      case ':':
        return Long.parseLong(line);
      case '-':
        return new RedisError(line);
      case '$':
        int length = Integer.parseInt(line);
        if (length < 0) {
          return null;
        }
        byte[] bytes = in.readNBytes(length);
        skip(2);
        return new String(bytes, StandardCharsets.UTF_8);
      case '*':
        int items = Integer.parseInt(line);
        if (items < 0) {
          return null;
        }
        java.util.List<Object> list = new java.util.ArrayList<>(items);
        for (int i = 0; i < items; i++) {
          list.add(readValue());
        }
        return list;
      default:
        throw new IOException("unexpected Redis reply type " + type);
    }
  }

  /** One reply: null, or the error Redis answered (nested replies are read whole). */
  private RedisError readReply() throws IOException {
    int type = in.read();
    String line = readLine();
    switch (type) {
      case '+':
      case ':':
        return null;
      case '-':
        return new RedisError(line);
      case '$':
        int length = Integer.parseInt(line);
        if (length >= 0) {
          skip(length + 2);
        }
        return null;
      case '*':
        int items = Integer.parseInt(line);
        RedisError first = null;
        for (int i = 0; i < items; i++) {
          RedisError error = readReply();
          first = first == null ? error : first;
        }
        return first;
      default:
        throw new IOException("unexpected Redis reply type " + type);
    }
  }

  private String readLine() throws IOException {
    StringBuilder line = new StringBuilder();
    while (true) {
      int b = in.read();
      if (b < 0) {
        throw new EOFException("Redis closed the connection");
      }
      if (b == '\r') {
        in.read(); // '\n'
        return line.toString();
      }
      line.append((char) b);
    }
  }

  private void skip(int n) throws IOException {
    int left = n;
    while (left > 0) {
      long skipped = in.skip(left);
      if (skipped <= 0) {
        if (in.read() < 0) {
          throw new EOFException("Redis closed the connection");
        }
        skipped = 1;
      }
      left -= (int) skipped;
    }
  }

  @Override
  public void close() {
    if (socket != null) {
      try {
        socket.close();
      } catch (IOException ignored) {
        // closing a broken connection
      }
    }
    socket = null;
  }

  /** Redis answered a command with an error. */
  static final class RedisError extends IOException {
    final String reply;

    RedisError(String message) {
      super("Redis error: " + message);
      reply = message;
    }

    /**
     * The server cannot take commands yet, and will: it is loading its data (LOADING,
     * after a restart) or running a long script (BUSY). The same commands succeed later.
     */
    boolean retryable() {
      return reply.startsWith("LOADING") || reply.startsWith("BUSY");
    }

    /** The cluster moved the key's slot (or is reconfiguring): ask again elsewhere. */
    boolean redirected() {
      return reply.startsWith("MOVED ")
          || reply.startsWith("ASK ")
          || reply.startsWith("TRYAGAIN")
          || reply.startsWith("CLUSTERDOWN");
    }
  }
}
