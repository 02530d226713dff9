// Node: the daemon behind `nex node up`. It answers the control API on the control NATS
// (PING, AUCTION, WPING, INFO, DEPLOY, STOP, LAMEDUCK), keeps a warm pool of agents behind its
// private NATS server, runs each workload through one agent, republishes their logs and events,
// restarts essential workloads with backoff, and on shutdown undeploys everything and leaves
// nothing behind. Its parts: node.cc (start, maintenance, stop, metrics), control_api.cc (the
// API handlers), workloads.cc (deploy, stop, restore, what agents report), triggers/route.h and
// triggers/relay.h (how functions get their triggers), node_metrics.h.
//
// Which lock guards what:
// - mu_: workloads_, ended_, reserved_slots_ and reserved_bytes_, and in each Workload record
//   (node_internals.h) its state (phase, health, restarts: workload_state.h), agent_gone,
//   last_exit, triggers and channel. A record's other fields are written before it is
//   registered in workloads_ and only read after, except its agent request, which the
//   maintenance thread alone changes (an essential restart's retry count), and its counters,
//   which are atomic.
// - restore_mu_: restores_ and relist_at_. deploys_mu_ (with deploys_cv_): deploys_in_flight_.
//   barrier_mu_ (with barrier_cv_): barriers_. maintenance_mu_ (with maintenance_cv_):
//   maintenance_stop_. Never held while taking mu_, nor mu_ while taking them.
// - None, by ownership: what start() sets up (connections, driver, internal server, pool, host
//   services, store, ledger, relay, commands, subscriptions) is set before any thread of the
//   node runs and released by stop() after they all ended; lameduck_ and stopped_ are atomic.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "api/agent.h"
#include "api/control.h"
#include "commands/command_service.h"
#include "crypto/jwt.h"
#include "metrics/endpoint.h"
#include "nats/connection.h"
#include "node/agent_pool.h"
#include "node/host_services/server.h"
#include "node/internal_server.h"
#include "node/node_config.h"
#include "node/node_identity.h"
#include "node/node_metrics.h"
#include "node/request_ledger.h"
#include "node/workload_state.h"
#include "node/workload_store.h"
#include "sandbox/driver.h"
#include "triggers/relay.h"
#include "triggers/route.h"

namespace nex::node {

struct NodeOptions {
  NodeConfig config;
  nats::ConnectOptions control;  // the control NATS the node serves its API on
  std::filesystem::path state_dir;
  std::filesystem::path agent_binary;  // default: nex-agent beside the running executable
  std::string version;
  std::string metrics_listen;  // HOST:PORT for Prometheus' /metrics; empty: none
};

// A kept workload that did not come back yet (src/node/restore.cc).
struct PendingRestore {
  WorkloadStore::Entry entry;  // entry.id: the id the workload had
  std::string name;
  std::string issuer;              // who deployed it: the only one who may stop it
  std::string state = "retrying";  // or "failed": the artifact is not the one signed for
  std::string reason;
  int attempts = 0;
  std::chrono::steady_clock::time_point next;
  bool in_progress = false;
};

class Node {
 public:
  static Result<std::unique_ptr<Node>> start(NodeOptions options);
  // Stops gracefully if stop() was not called.
  ~Node();

  const std::string& id() const { return identity_.id(); }
  // The name durable commands address this node by (config node_name, or the host name).
  const std::string& name() const { return options_.config.node_name; }
  std::string xkey() const { return identity_.xkey().public_key(); }
  // The port of the node's private NATS server (on loopback), which workloads never reach
  // except as agents.
  int internal_nats_port() const { return internal_->port(); }
  // Undeploys every workload, announces node_stopped and releases everything.
  void stop();
  // Where Prometheus scrapes (http://HOST:PORT/metrics); empty without metrics_listen.
  std::string metrics_url() const { return metrics_endpoint_ ? metrics_endpoint_->url() : ""; }

 private:
  struct Workload;
  Node(NodeOptions options, NodeIdentity identity);
  // The parts start() brings up, in its order (node.cc).
  Status open_ledger();
  void clean_run_dir();
  Status connect_control();  // the control NATS, and the connection for batched events
  Status start_sandboxes();  // the sandbox driver and the internal NATS server
  Status subscribe_agents();
  Status start_host_services();  // and the metrics endpoint, whose port they must not reach
  Status start_pool();
  Status open_store();
  Status serve_api();
  Status start_commands();
  void go_live();  // maintenance, metrics, node_started, autostarts

  // Control API.
  void serve(const std::string& subject, void (Node::*handler)(nats::Message));
  void on_ping(nats::Message msg);
  void on_auction(nats::Message msg);
  void on_wping(nats::Message msg);
  void on_info(nats::Message msg);
  void on_deploy(nats::Message msg);
  void on_stop(nats::Message msg);
  void on_lameduck(nats::Message msg);
  // Where a deploy comes from: a request is kept in the workload store so that a restart
  // brings it back; a restore is such a one coming back; autostart ones come from the config.
  enum class DeployOrigin { kRequest, kRestore, kAutostart };
  struct VerifiedDeploy;
  Result<nlohmann::json> deploy(const std::string& ns, std::string_view body,
                                DeployOrigin origin = DeployOrigin::kRequest);
  // Parses the request and checks who signed it and for what (api/signed_request.h), before
  // anything is looked up, reserved or decrypted.
  Result<VerifiedDeploy> verify_deploy(const std::string& ns, std::string_view body,
                                       DeployOrigin origin);
  // The deploy pipeline (workloads.cc): a verified request goes through the steps below, in
  // this order; each step that takes something leaves a guard in the DeployRun that gives it
  // back if a later step fails. `replaces`: an essential workload whose agent died, deployed
  // again in a new agent (a new id, its restarts carried over).
  Result<nlohmann::json> try_deploy(const std::string& ns, std::string_view body,
                                    const VerifiedDeploy& checked, DeployOrigin origin,
                                    const Workload* replaces = nullptr);
  struct DeployRun;
  class AgentLease;
  class Registration;
  class AgentAccepted;
  Status reserve(DeployRun& run);           // lame duck, and a place under max_workloads
  Status admit(DeployRun& run);             // type, triggers, sealed environment, sandbox NATS
  Status take_agent(DeployRun& run);        // a warm agent from the pool
  Status fetch(DeployRun& run);             // the artifact: size, bytes reserved, download, hash
  Status download(DeployRun& run);          // one try at fetch's download
  Status reserve_bytes(DeployRun& run);     // (fetch) the artifact's bytes under max_total_bytes
  Status prepare(DeployRun& run);           // the agent's deploy request
  Status prepare_native(DeployRun& run);    // (prepare) host services and the workload's NATS
  Status prepare_triggers(DeployRun& run);  // (prepare) how a function gets its triggers
  void register_workload(DeployRun& run);   // in workloads_ and the store, before it starts
  Status start_in_agent(DeployRun& run);    // the agent starts it and says yes
  Status route_triggers(DeployRun& run);    // a relayed function's trigger subscriptions
  nlohmann::json announce(DeployRun& run);  // running: logged, workload_deployed, answered
  // A requested deploy with `replace`: the workloads it replaces (its issuer's of the same name
  // in the namespace) are stopped once it runs, and named in its answer ("replaced"); one of
  // another type makes it a refusal before anything starts. A refused deploy stops nothing.
  Result<nlohmann::json> deploy_replacing(const std::string& ns, std::string_view body,
                                          const VerifiedDeploy& checked);
  Result<std::vector<std::shared_ptr<Workload>>> replaced_by(const std::string& ns,
                                                             const VerifiedDeploy& checked);
  // Whether a sandboxed workload's NATS_URL names only NATS servers the node may forward to it.
  Status check_sandbox_nats(const std::map<std::string, std::string>& env) const;
  // How long a deploy may take here: an agent from the pool (a sandbox may have to boot), the
  // artifact's download and the agent's answer. Clients wait this long (ours: in INFO).
  std::chrono::milliseconds deploy_deadline() const;
  // Redeploys what the store kept (before the node serves its API); what fails for now is
  // tried again from the maintenance loop (restore.cc).
  void restore_workloads();
  void restore(PendingRestore p);
  void retry_restores(std::chrono::steady_clock::time_point now);
  nlohmann::json restores_json(const std::string& ns);
  // How many replicas what the node creates in JetStream gets: the config's, or with "auto"
  // what the JetStream can keep; logged. Refuses a configured number the JetStream cannot keep.
  Status choose_replicas();
  // The caps of each stream and bucket the node creates, by name (INFO's "storage").
  nlohmann::json storage_json() const;
  // A stop of a workload that is waiting to be restored: its entry goes.
  std::optional<Result<nlohmann::json>> stop_pending_restore(const std::string& ns,
                                                             const std::string& id,
                                                             const crypto::JwtClaims& claims);
  Result<nlohmann::json> stop_workload(const std::string& ns, std::string_view body);
  Result<nlohmann::json> stop_checked(const std::string& ns, const api::StopRequest& req,
                                      const crypto::JwtClaims& claims);
  // Marks `w` stopping, drains its relayed triggers and undeploys it; false when it was already
  // being stopped.
  bool stop_running(const std::shared_ptr<Workload>& w, const std::string& message);
  Result<nlohmann::json> lameduck(std::string_view body);
  // Takes a signed request's one use in the ledger; a repeat of the very same request (its
  // api::request_fingerprint) gets the first use's answer, any other use of the jti a refusal.
  std::optional<Result<nlohmann::json>> take_once(const crypto::JwtClaims& claims,
                                                  const std::string& fingerprint);
  void answer_once(const crypto::JwtClaims& claims, const Result<nlohmann::json>& answer);

  // Agents.
  std::shared_ptr<Workload> find_workload(const std::string& workload_id);
  // The one place a workload's phase changes (mu_ held). A transition the lifecycle does not
  // allow (workload_state.h) is refused and logged: it would be a bug of the node's.
  void move_to(Workload& w, WorkloadPhase phase);
  // A line of a workload's output: within its rate limit (LogLimiter), cut to the line bound,
  // republished on $NEX.logs.
  void on_agent_log(nats::Message msg);
  // The lines dropped over its rate limit, told in its log (at most once per second, or now
  // when `final`: it is going).
  void report_dropped_logs(Workload& w, std::chrono::steady_clock::time_point now, bool final);
  void on_agent_event(nats::Message msg);
  // A function's invocations, reported in batches (hostint.{id}.invocations): counted, and
  // republished one by one as function_exec_* events.
  void on_agent_invocations(nats::Message msg);
  // A microVM's agent fetching its workload's file ({"offset": N}; hostint.{id}.artifact).
  void on_agent_artifact(nats::Message msg);
  std::filesystem::path sandboxes_dir() const { return run_dir_ / "sandboxes"; }  // the pool's
  // Returns once the agent-traffic subscription has handled all that reached the node before
  // the call (a marker of the node's own, hostint.{id}.barrier.{token}, goes through it), or
  // after `patience`. An agent's last invocation reports travel on another connection than its
  // undeploy answer, so they can be queued behind it here.
  void wait_for_agent_traffic(const std::string& workload_id, std::chrono::milliseconds patience);
  void republish_invocation(Workload& w, const api::InvocationReport& report);
  // A line in the workload's log, as if the workload had written it.
  void publish_workload_log(const std::string& ns, const std::string& name,
                            const std::string& workload_id, const std::string& level,
                            const std::string& text);
  void on_workload_exited(const std::shared_ptr<Workload>& w, int code, const std::string& message);
  // Sandboxes whose agent ended (killed, crashed, its VMM gone) are reaped here, from the
  // maintenance loop, and their workloads restarted or ended (on_agent_exited).
  void reap_agents(const std::vector<std::shared_ptr<Workload>>& all);
  void on_agent_exited(const std::shared_ptr<Workload>& w, int status);
  // An essential workload that ended (`how`) is restarted after a backoff, until it has been
  // kMaxRestarts times; whether it will be. Called with mu_ held.
  bool schedule_restart(Workload& w, const std::string& how);
  // A workload that ended on its own and is not restarted: recorded for INFO ("ended"), told
  // as a crash loop when it was essential, and removed.
  void end_workload(const std::shared_ptr<Workload>& w, int code, const std::string& message);
  void remember_ended(const Workload& w, int code, const std::string& exit);  // mu_ held
  void remove_workload(const std::shared_ptr<Workload>& w, int code, const std::string& message);
  // An essential workload whose agent died: its sandbox released, deployed again in a new one.
  void restart_in_new_agent(const std::shared_ptr<Workload>& w);
  // Undeploys a workload marked stopping whose relayed triggers were drained: the agent stops it
  // (its last logs, events and answers still reach the node meanwhile), then it is removed.
  void undeploy(const std::shared_ptr<Workload>& w, const std::string& message);
  void maintenance_loop();
  // Reports workloads, warm agents and command queues at each scrape.
  void collect_metrics(metrics::Scrape& scrape);

  // A relayed function's trigger subscriptions (see triggers::TriggerRelay), and its trigger
  // channel when its agent has one, kept on its record.
  Status relay_triggers(const std::shared_ptr<Workload>& w);
  // Essential workloads whose restart time has come are started again by their agents.
  void restart_due(const std::vector<std::shared_ptr<Workload>>& all,
                   std::chrono::steady_clock::time_point now);

  nlohmann::json ping_data();
  api::Tags tags();
  std::vector<api::WorkloadType> supported_types() const;
  // `batched`: one of the many per-invocation events, sent on control_bulk_.
  void publish_event(const std::string& ns, const std::string& type, const nlohmann::json& data,
                     const std::string& source = {}, bool batched = false);
  void reply(const nats::Message& msg, const std::string& body);
  void reply_result(const nats::Message& msg, std::string_view kind,
                    const Result<nlohmann::json>& r);

  NodeOptions options_;
  nats::ReplicaPolicy replicas_;  // of what the node creates in JetStream (choose_replicas)
  NodeIdentity identity_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::filesystem::path run_dir_;
  std::optional<nats::Connection> control_;
  // Per-invocation function events, batched: without send_asap libnats writes them together
  // within a millisecond, instead of one write per invocation beside the functions' replies.
  std::optional<nats::Connection> control_bulk_;
  std::unique_ptr<sandbox::Driver> driver_;
  std::unique_ptr<InternalServer> internal_;
  std::unique_ptr<AgentPool> pool_;
  std::unique_ptr<host_services::Server> host_services_;
  // Operator mode: signs each workload's host-services users; empty otherwise.
  std::function<host_services::SignedUser(const std::string&, const nlohmann::json&)>
  host_services_signer() const;
  std::unique_ptr<commands::CommandService> commands_;
  std::unique_ptr<WorkloadStore> store_;
  std::unique_ptr<RequestLedger> ledger_;  // signed requests used, until they expire
  std::mutex restore_mu_;                  // guards restores_ and relist_at_
  std::map<std::string, PendingRestore> restores_;
  std::optional<std::chrono::steady_clock::time_point> relist_at_;  // the store was unreadable
  std::vector<nats::Subscription> subscriptions_;                   // the control API
  std::vector<nats::Subscription> agent_subscriptions_;  // agents' logs, events and answers
  std::atomic<bool> lameduck_{false};
  std::atomic<bool> stopped_{false};

  class Reservation;
  std::mutex mu_;  // guards workloads_, the reservations and ended_
  std::map<std::string, std::shared_ptr<Workload>> workloads_;
  // The last workloads that ended on their own (exited, or their agent died), for INFO.
  struct EndedWorkload {
    std::string ns, id, name, exit;
    int code = 0;
    std::chrono::system_clock::time_point at;
  };
  std::deque<EndedWorkload> ended_;
  size_t reserved_slots_ = 0;   // deploys under way, each holding a place
  int64_t reserved_bytes_ = 0;  // and the bytes of their artifacts, once known
  std::mutex deploys_mu_;       // guards deploys_in_flight_
  std::condition_variable deploys_cv_;
  int deploys_in_flight_ = 0;  // control API deploys on their threads

  std::mutex barrier_mu_;  // guards barriers_: the markers wait_for_agent_traffic waits for
  std::condition_variable barrier_cv_;
  std::set<std::string> barriers_;

  std::unique_ptr<triggers::TriggerRelay> relay_;
  std::optional<triggers::TriggerCredentials>
      trigger_credentials_;  // operator mode, when configured
  NodeMetrics metrics_;
  std::unique_ptr<metrics::Endpoint> metrics_endpoint_;

  std::mutex maintenance_mu_;
  std::condition_variable maintenance_cv_;
  bool maintenance_stop_ = false;
  std::thread maintenance_;
};

}  // namespace nex::node
