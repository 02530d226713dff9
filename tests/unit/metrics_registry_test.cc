// The Prometheus text the registry writes: families in order, escaped labels, cumulative
// histogram buckets, gauges read at the scrape.
#include <gtest/gtest.h>

#include "metrics/registry.h"

namespace nex::metrics {
namespace {

TEST(MetricsRegistry, WritesTheTextExpositionFormat) {
  Registry r;
  r.counter("jobs_total", "Jobs done.");
  r.histogram("job_seconds", "How long jobs took.", {0.5, 0.1});
  r.gauge("queue", "Jobs waiting.");
  int waiting = 7;
  r.collect([&](Scrape& s) { s.gauge("queue", {{"q", "a"}}, waiting); });

  r.add("jobs_total", {{"name", "say \"hi\"\\\n"}});
  r.add("jobs_total", {{"name", "say \"hi\"\\\n"}}, 2);
  r.observe("job_seconds", {{"kind", "x"}}, 0.05);
  r.observe("job_seconds", {{"kind", "x"}}, 0.3);
  r.observe("job_seconds", {{"kind", "x"}}, 9);
  r.add("undeclared_total");       // dropped
  r.observe("jobs_total", {}, 1);  // not a histogram: dropped

  EXPECT_EQ(r.render(),
            "# HELP jobs_total Jobs done.\n"
            "# TYPE jobs_total counter\n"
            "jobs_total{name=\"say \\\"hi\\\"\\\\\\n\"} 3\n"
            "# HELP job_seconds How long jobs took.\n"
            "# TYPE job_seconds histogram\n"
            "job_seconds_bucket{kind=\"x\",le=\"0.1\"} 1\n"
            "job_seconds_bucket{kind=\"x\",le=\"0.5\"} 2\n"
            "job_seconds_bucket{kind=\"x\",le=\"+Inf\"} 3\n"
            "job_seconds_sum{kind=\"x\"} 9.35\n"
            "job_seconds_count{kind=\"x\"} 3\n"
            "# HELP queue Jobs waiting.\n"
            "# TYPE queue gauge\n"
            "queue{q=\"a\"} 7\n");
  waiting = 0;
  EXPECT_NE(r.render().find("queue{q=\"a\"} 0\n"), std::string::npos) << "read at each scrape";
}

TEST(MetricsRegistry, AnObservationOnABoundCountsInThatBucket) {
  Registry r;
  r.histogram("h", "h", {1, 2});
  r.observe("h", {}, 1);
  EXPECT_NE(r.render().find("h_bucket{le=\"1\"} 1\n"), std::string::npos) << r.render();
}

}  // namespace
}  // namespace nex::metrics
