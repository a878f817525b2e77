/*
 * Beam's default gRPC server factory (the one Flink's Python operators use for the
 * control, data, state, logging and provisioning services of their Python workers),
 * changed in one respect: the servers listen on the loopback address they advertise.
 * Beam's own version advertises "localhost" but binds the port on every interface
 * (NettyServerBuilder.forPort), so every JVM running Python functions listened beyond
 * this machine. Only the nested class is packaged (speed_layer/loopback.py), found
 * before Beam's on the class path; the outer class here is just the part of Beam's
 * ServerFactory it compiles against.
 */
package org.apache.beam.sdk.fn.server;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import org.apache.beam.model.pipeline.v1.Endpoints;
import org.apache.beam.sdk.fn.channel.SocketAddressFactory;
import org.apache.beam.vendor.grpc.v1p60p1.io.grpc.BindableService;
import org.apache.beam.vendor.grpc.v1p60p1.io.grpc.Server;
import org.apache.beam.vendor.grpc.v1p60p1.io.grpc.ServerInterceptors;
import org.apache.beam.vendor.grpc.v1p60p1.io.grpc.netty.NettyServerBuilder;

public abstract class ServerFactory {
  public abstract Server allocateAddressAndCreate(
      List<BindableService> services, Endpoints.ApiServiceDescriptor.Builder descriptor)
      throws IOException;

  public abstract Server create(
      List<BindableService> services, Endpoints.ApiServiceDescriptor descriptor)
      throws IOException;

  /** Beam's: makes the URL a worker is given for a server's host and port. */
  public interface UrlFactory {
    String createUrl(String address, int port);
  }

  public static class InetSocketAddressServerFactory extends ServerFactory {
    private static final long KEEP_ALIVE_TIME_SEC = 19;

    private final ServerFactory.UrlFactory urlFactory;
    private final Supplier<Integer> portSupplier;

    public InetSocketAddressServerFactory(ServerFactory.UrlFactory urlFactory) {
      this(urlFactory, () -> 0);
    }

    public InetSocketAddressServerFactory(
        ServerFactory.UrlFactory urlFactory, Supplier<Integer> portSupplier) {
      this.urlFactory = urlFactory;
      this.portSupplier = portSupplier;
    }

    @Override
    public Server allocateAddressAndCreate(
        List<BindableService> services, Endpoints.ApiServiceDescriptor.Builder descriptor)
        throws IOException {
      InetSocketAddress address =
          new InetSocketAddress(InetAddress.getLoopbackAddress(), portSupplier.get());
      Server server = createServer(services, address);
      // The literal address, not "localhost": the worker connects where the server listens,
      // wherever that name resolves.
      String host = address.getAddress().getHostAddress();
      descriptor.setUrl(urlFactory.createUrl(host.contains(":") ? "[" + host + "]" : host,
          server.getPort()));
      return server;
    }

    @Override
    public Server create(List<BindableService> services, Endpoints.ApiServiceDescriptor descriptor)
        throws IOException {
      SocketAddress address = SocketAddressFactory.createFrom(descriptor.getUrl());
      if (!(address instanceof InetSocketAddress)) {
        throw new IllegalArgumentException(
            "a gRPC server needs a host:port socket address, got " + descriptor.getUrl());
      }
      return createServer(services, (InetSocketAddress) address);
    }

    private static Server createServer(List<BindableService> services, InetSocketAddress address)
        throws IOException {
      NettyServerBuilder builder =
          NettyServerBuilder.forAddress(address)
              .maxInboundMessageSize(Integer.MAX_VALUE)
              .permitKeepAliveTime(KEEP_ALIVE_TIME_SEC, TimeUnit.SECONDS);
      for (BindableService service : services) {
        builder.addService(
            ServerInterceptors.intercept(service, GrpcContextHeaderAccessorProvider.interceptor()));
      }
      return builder.build().start();
    }
  }
}
