package lfp.speed;

import java.io.Closeable;
import java.io.IOException;

/** Pipelined Redis commands: queued, then sent and their replies read by {@link #sync}. */
interface RedisCommands extends Closeable {

  /** Queues one command. */
  void command(String... args);

  /** Sends what is queued and reads every reply, retrying until {@code giveUpMs}. */
  void sync(long giveUpMs) throws IOException, InterruptedException;

  @Override
  void close();

  /** The commands for an {@code LFP_REDIS_URL}: one server's, or a cluster's. */
  static RedisCommands open(String url, boolean cluster) {
    return cluster ? new RedisClusterPipeline(url) : new RedisPipeline(url);
  }
}
