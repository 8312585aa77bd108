/**
 * The edge's /metrics (Prometheus text, `sinkstream:edge_` names). Backends are labelled `b0`, `b1`, … in
 * the order of `--backend` (the log lines name their URLs; /metrics does not).
 */
import { Counter, FINE_BUCKETS, Gauge, Histogram, labelText, Metric, num } from "../metrics/metrics.ts";

/** A family of values, one per label set (a counter or gauge). */
export class Family extends Metric {
  readonly #values = new Map<string, { labels: Record<string, string>; value: number }>();

  constructor(name: string, help: string, type: "counter" | "gauge", readonly labelName: string) {
    super(name, help, type);
  }

  #slot(label: string) {
    let v = this.#values.get(label);
    if (!v) this.#values.set(label, v = { labels: { [this.labelName]: label }, value: 0 });
    return v;
  }

  inc(label: string, by = 1): void {
    this.#slot(label).value += by;
  }

  set(label: string, value: number): void {
    this.#slot(label).value = value;
  }

  get(label: string): number {
    return this.#values.get(label)?.value ?? 0;
  }

  /** Sum over every label. */
  get total(): number {
    let t = 0;
    for (const v of this.#values.values()) t += v.value;
    return t;
  }

  samples(): string[] {
    return [...this.#values.values()].map((v) => `${this.name}${labelText(v.labels)} ${num(v.value)}`);
  }
}

export class EdgeMetrics {
  readonly sessions = new Family(
    "sinkstream:edge_sessions",
    "Sessions this edge relays, per backend.",
    "gauge",
    "backend",
  );
  readonly placements = new Family(
    "sinkstream:edge_placements_total",
    "New sessions placed, per backend.",
    "counter",
    "backend",
  );
  readonly failovers = new Family(
    "sinkstream:edge_failovers_total",
    "Sessions moved to another backend, per reason (backend_lost, draining, resume).",
    "counter",
    "reason",
  );
  readonly restores = new Counter(
    "sinkstream:edge_restores_total",
    "Backend sessions rebuilt from a checkpoint by this edge.",
  );
  readonly reattached = new Counter(
    "sinkstream:edge_reattached_total",
    "Reconnected clients that got their session back on the same backend session.",
  );
  readonly backendUp = new Family(
    "sinkstream:edge_backend_up",
    "1 when the backend takes new sessions (ready, not draining, circuit closed), else 0.",
    "gauge",
    "backend",
  );
  readonly backendDraining = new Family(
    "sinkstream:edge_backend_draining",
    "1 while the backend answers /readyz with 503 (draining).",
    "gauge",
    "backend",
  );
  readonly connectFailures = new Family(
    "sinkstream:edge_backend_connect_failures_total",
    "Failed connections and health reads, per backend.",
    "counter",
    "backend",
  );
  readonly relayLatency = new Histogram(
    "sinkstream:edge_relay_latency_seconds",
    "Per backend message: from its last byte read by the edge to its frame handed to the client socket.",
    FINE_BUCKETS,
  );
  readonly openSessions = new Gauge("sinkstream:edge_open_sessions", "Client sockets this edge holds.");

  render(): string {
    const all: Metric[] = [
      this.sessions,
      this.openSessions,
      this.placements,
      this.failovers,
      this.restores,
      this.reattached,
      this.backendUp,
      this.backendDraining,
      this.connectFailures,
      this.relayLatency,
    ];
    return all.map((m) => m.render()).join("\n") + "\n";
  }
}
