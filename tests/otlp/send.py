# Exports metrics with the OpenTelemetry Python SDK and its OTLP/HTTP
# exporter (a real OTLP client) to the URL in argv[1]. argv[2]: "plain",
# "gzip" (the same data, gzip bodies) or "delta" (a delta-temporality
# counter, which Tidemark refuses). Used by tests/otlp.rs.
import sys
from opentelemetry.sdk.metrics import MeterProvider, Counter, Histogram, UpDownCounter
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader, AggregationTemporality
from opentelemetry.sdk.metrics.view import View, ExponentialBucketHistogramAggregation
from opentelemetry.sdk.resources import Resource
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.metrics import Observation

url, mode = sys.argv[1], sys.argv[2]
temporality = {}
if mode == "delta":
    temporality = {Counter: AggregationTemporality.DELTA}
exporter = OTLPMetricExporter(endpoint=url, compression=Compression.Gzip if mode == "gzip" else Compression.NoCompression,
                              preferred_temporality=temporality)
reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
resource = Resource.create({"service.name": "checkout", "service.namespace": "shop",
                            "service.instance.id": "pod-1", "deployment.environment": "test"})
views = [View(instrument_name="rpc.latency", aggregation=ExponentialBucketHistogramAggregation())]
provider = MeterProvider(resource=resource, metric_readers=[reader], views=views)
meter = provider.get_meter("tidemark-test", "1.2.3")
if mode == "delta":
    meter.create_counter("delta.requests").add(3)
else:
    meter.create_counter("http.server.requests", unit="{request}", description="Requests served.").add(5, {"http.method": "GET"})
    meter.create_up_down_counter("queue.size", unit="{item}").add(7)
    meter.create_observable_gauge("memory.usage", unit="By", callbacks=[lambda o: [Observation(1024, {"area": "heap"})]])
    h = meter.create_histogram("http.server.duration", unit="ms")
    for v in (3, 30, 300):
        h.record(v)
    e = meter.create_histogram("rpc.latency", unit="s")
    for v in (0.1, 0.2, 0.4, 0.8):
        e.record(v)
provider.force_flush()
provider.shutdown()
