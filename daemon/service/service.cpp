#include "service/service.hpp"

#include <spdlog/spdlog.h>

#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <atomic>
#include <future>
#include <iostream>
#include <thread>

#include "adapters/curl/curl_pool.hpp"
#include "adapters/registry.hpp"
#include "config/config.hpp"
#include "config/storage_target.hpp"
#include "dispatch/dispatcher.hpp"
#include "http/api.hpp"
#include "http/fhir.hpp"
#include "http/form.hpp"
#include "http/server.hpp"
#include "intake/submission.hpp"
#include "intake/validator.hpp"
#include "intake/identity.hpp"
#include "routing/business_hours.hpp"
#include "service/escalation_timer.hpp"
#include "service/reload.hpp"
#include "store/due_listener.hpp"
#include "store/office.hpp"
#include "store/store.hpp"
#include "store/writer.hpp"
#include "util/sealed_spool.hpp"
#include "util/logging.hpp"
#include "util/sd_notify.hpp"
#include "util/threads.hpp"

namespace referrald {

namespace asio = boost::asio;

namespace {

constexpr auto shutdown_grace = std::chrono::seconds(10);
constexpr int exit_invalid_configuration = 78;  // EX_CONFIG (sysexits.h)

std::shared_ptr<const IntakePolicy> make_policy(const Configuration& c,
                                                const std::vector<unsigned char>& database_secret) {
  auto p = std::make_shared<IntakePolicy>();
  p->rules = c.rules;
  p->routes = c.config.routes;
  p->hours = c.config.office.hours;
  p->escalations = c.config.escalations;
  p->duplicate_window = std::chrono::duration_cast<std::chrono::milliseconds>(c.config.intake.duplicate_window);
  p->identity_key = load_identity_key(c.config.intake.identity_key, c.config.storage.keys.get(), database_secret);
  p->attachment_limits = c.config.intake.attachments;
  // The date library loads a time zone's rules on first use. Load the
  // office's here, on the thread that publishes the policy, rather than in
  // the first requests on several I/O threads at once (ThreadSanitizer
  // reports that first use as a race inside libdate-tz).
  is_after_hours(p->hours, std::chrono::system_clock::now());
  // ICU's normalisation data likewise (intake/identity.cpp), before the I/O
  // threads hash their first patients at once.
  normalise_name("");
  return p;
}

// The database's own secret (store::identity_secret), made at the first
// start: the identity hash's key when the configuration names none. Read
// once, before anything else is written.
std::vector<unsigned char> read_identity_secret(store::Writer& writer) {
  auto secret = std::make_shared<std::vector<unsigned char>>();
  // Shared with the completion: set_value may still be running on the
  // writer thread when get() returns here.
  auto done = std::make_shared<std::promise<store::JobResult>>();
  auto result = done->get_future();
  writer.submit([secret](store::Database& db) { *secret = store::identity_secret(db); },
                [done](store::JobResult r) { done->set_value(std::move(r)); });
  const auto r = result.get();
  if (r.status != store::JobStatus::committed) {
    throw std::runtime_error("could not read the database's identity secret: " + r.error);
  }
  return *secret;
}

// Which targets hear of a status change made over HTTP (the API, a link).
http::NoticeTargets notice_targets_of(const Config& c) {
  return [loop = c.closed_loop](OfficeStatus to) { return notice_targets(loop, to); };
}

// SQLite: two reader connections (reads in WAL mode do not wait for the
// writer); PostgreSQL: as many as [storage] pool says.
unsigned reader_connections(const StorageConfig& storage) {
  return storage.backend == StorageBackend::postgresql ? storage.pool : 2;
}

store::WriterOptions writer_options(const Config& c) {
  store::WriterOptions o;
  o.max_batch = c.storage.max_batch;
  o.queue_limit = c.storage.queue_limit;
  return o;
}

DispatcherOptions dispatcher_options(const Config& c) {
  DispatcherOptions o;
  o.retry = {c.delivery.max_attempts, c.delivery.initial_backoff, c.delivery.max_backoff, c.delivery.give_up_after};
  o.lease = c.delivery.lease;
  o.poll_interval = c.delivery.poll_interval;
  o.link_origin = c.closed_loop.link_origin;
  o.ack_link_ttl = c.closed_loop.ack_link_ttl;
  return o;
}

std::vector<DispatchTarget> make_targets(const Config& c, const AdapterContext& context) {
  std::vector<DispatchTarget> out;
  for (const auto& t : c.targets) {
    out.push_back(make_dispatch_target(t, context));
  }
  return out;
}

// The configuration as this daemon reads it: with the channels it sends to.
LoadOptions load_options() {
  LoadOptions options;
  options.target_kinds = target_kinds();
  return options;
}

void log_problems(const ConfigError& e, const char* event) {
  for (const auto& p : e.problems()) spdlog::error("{} problem=\"{}\"", event, p.to_string());
}

// Settings that only a restart applies; a reload that changes them says so.
void warn_restart_only(const Config& old_config, const Config& next) {
  auto listen = [](const Config& c) {
    std::string s;
    for (const auto& l : c.http.listen) s += l.to_string() + " ";
    return s;
  };
  if (listen(old_config) != listen(next) || old_config.http.tls_certificate != next.http.tls_certificate ||
      old_config.http.tls_private_key != next.http.tls_private_key ||
      old_config.storage.database != next.storage.database || old_config.storage.backend != next.storage.backend ||
      old_config.storage.url != next.storage.url || old_config.storage.pool != next.storage.pool ||
      old_config.storage.password_file != next.storage.password_file ||
      old_config.storage.password != next.storage.password || old_config.http.threads != next.http.threads) {
    spdlog::warn(
        "config.reload_partial note=\"listen addresses, TLS files, threads and the database "
        "take effect only after a restart\"");
  }
}

class Daemon {
 public:
  explicit Daemon(Configuration configuration)
      : configuration_(std::move(configuration)),
        validator_(configuration_.config.schema_dir / "referral.v1.schema.json"),
        writer_(storage_target(configuration_.config.storage), writer_options(configuration_.config)),
        readers_(storage_target(configuration_.config.storage), reader_connections(configuration_.config.storage)),
        identity_secret_(read_identity_secret(writer_)),
        intake_(validator_, writer_, clock_, make_policy(configuration_, identity_secret_)),
        status_changes_(writer_, clock_),
        api_(intake_, writer_, readers_, status_changes_, configuration_.config.http.api_keys,
             configuration_.config.http.office_api_keys),
        fhir_(api_, intake_, readers_),
        form_(configuration_.config.web_dir, configuration_.config.office, intake_, readers_, status_changes_),
        server_(ioc_.get_executor(), configuration_.config.http, api_),
        dispatcher_(std::make_shared<Dispatcher>(ioc_.get_executor(), writer_, clock_,
                                                 dispatcher_options(configuration_.config))),
        escalations_(ioc_.get_executor(), writer_, clock_, [d = dispatcher_] { d->wake(); }),
        signals_(ioc_, SIGTERM, SIGINT, SIGHUP) {
    name_pool_threads(blocking_, blocking_threads, "rd-blocking");
    set_payload_keys(configuration_.config.storage.keys);
    adapter_context_.executor = ioc_.get_executor();
    adapter_context_.blocking_executor = blocking_.get_executor();
    intake_.set_file_work_runner(
        [ex = blocking_.get_executor()](std::function<void()> work) { asio::post(ex, std::move(work)); });
    adapter_context_.curl = &curl_;
    adapter_context_.office = &configuration_.config.office;
    adapter_context_.clock = &clock_;
    dispatcher_->set_targets(make_targets(configuration_.config, adapter_context_),
                             dispatcher_options(configuration_.config));
    // Wake the dispatcher for new deliveries only: waking on every commit
    // would wake it for its own claims' commits, a loop that never idles.
    // Changes made by referralctl are picked up by its poll (and, on
    // PostgreSQL, by the due listener below).
    // The escalation timer looks again only for a referral that planned
    // steps (one may be due before the one it waits for); it fires, at
    // start, the steps that passed while the daemon was down.
    intake_.on_planned([this](IntakeService::Planned planned) {
      if (planned.deliveries) dispatcher_->wake();
      if (planned.escalations) escalations_.wake();
    });
    status_changes_.on_deliveries_planned([d = dispatcher_] { d->wake(); });
    // PostgreSQL: what other instances and referralctl make due wakes the
    // dispatcher too (docs/storage.md, "Waking idle dispatchers").
    if (const auto target = storage_target(configuration_.config.storage);
        target.backend == store::Dialect::postgresql) {
      due_listener_ =
          std::make_unique<store::DueListener>(ioc_.get_executor(), blocking_.get_executor(), target.postgres,
                                               store::due_token(), [d = dispatcher_] { d->wake(); });
    }
    status_changes_.set_notice_targets(notice_targets_of(configuration_.config));
    api_.add_metrics_source([this] { return dispatch_metrics(); });
    api_.set_plain_body_limit(configuration_.config.http.max_body_bytes);
    api_.set_fallback(&fhir_);
    fhir_.set_fallback(&form_);
    form_.set_intake_counts(&api_.intake_counts());
    form_.set_public_origins(configuration_.config.http.public_origins);
    api_.add_metrics_source([this] { return form_.metrics(); });
    // Large intake bodies, and the files of every referral waiting for its
    // commit, wait on disk, sealed, beside the database
    // (docs/attachments.md, "Streaming to disk").
    const auto& storage = configuration_.config.storage;
    const auto spool =
        default_spool_directory(storage.backend == StorageBackend::sqlite ? storage.database : std::filesystem::path());
    server_.set_spool_directory(spool);
    intake_.set_spool_directory(spool);
    // SQLite: a commit the disk failed to make durable stops the writer for
    // good (docs/architecture.md); the daemon then stops with a failure, so
    // that systemd starts it again (Restart=on-failure) and SQLite recovers
    // from what is on disk. Referrals are refused (503) meanwhile.
    writer_.on_fail_stop([this](const std::string& why) {
      asio::post(ioc_, [this, why] {
        spdlog::critical(
            "store.fail_stop error=\"{}\" note=\"an fsync of the database failed: referrald stops so that it "
            "starts again on what is on disk\"",
            why);
        exit_code_ = exit_io_error;
        begin_shutdown();
      });
    });
  }

  int run() {
    server_.start();
    dispatcher_->start();
    escalations_.start();
    if (due_listener_) due_listener_->start();
    wait_for_signal();
    start_watchdog();
    start_status_updates();
    std::string endpoints;
    for (const auto& e : server_.local_endpoints()) endpoints += (endpoints.empty() ? "" : ",") + e;
    spdlog::info("referrald.started listen={} tls={} database={} encryption_key={} targets={} routes={}", endpoints,
                 configuration_.config.http.tls_enabled() ? "on" : "off",
                 store::describe(storage_target(configuration_.config.storage)), encryption_key(configuration_.config),
                 configuration_.config.targets.size(), configuration_.config.routes.size());
    if (!configuration_.config.storage.keys) {
      spdlog::warn(
          "storage.unencrypted note=\"storage.encryption_keys is not set: new referrals are stored in the "
          "clear (docs/encryption.md)\"");
    }
    // Listeners are bound and the store is open: connections queue from here on.
    notifier_.ready(status_line());
    const unsigned threads = std::max(1U, configuration_.config.http.threads);
    std::vector<std::thread> pool;
    for (unsigned i = 1; i < threads; ++i) {
      pool.emplace_back([this] {
        name_this_thread("rd-http");
        ioc_.run();
      });
    }
    ioc_.run();
    for (auto& t : pool) t.join();
    blocking_.join();
    readers_.stop();
    writer_.stop();
    spdlog::info("referrald.stopped");
    return exit_code_;
  }

 private:
  void wait_for_signal() {
    signals_.async_wait([this](const boost::system::error_code& ec, int signo) {
      if (ec) return;
      if (signo == SIGHUP) {
        reload();
        wait_for_signal();
        return;
      }
      spdlog::info("referrald.stopping signal={}", signo == SIGTERM ? "TERM" : "INT");
      begin_shutdown();
    });
  }

  // Once, whatever asks first (a signal, the store's fail-stop).
  void begin_shutdown() {
    if (shutting_down_.exchange(true)) return;
    notifier_.stopping();
    asio::co_spawn(ioc_, shutdown(), asio::detached);
  }

  // WATCHDOG=1 comes from the event loop itself: a stuck loop stops pinging
  // and systemd restarts the service.
  void start_watchdog() {
    const auto interval = notifier_.watchdog_interval();
    if (!interval) return;
    watchdog_timer_.expires_after(*interval);
    watchdog_timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec) return;
      notifier_.watchdog();
      start_watchdog();
    });
  }

  void start_status_updates() {
    if (!notifier_.enabled()) return;
    status_timer_.expires_after(std::chrono::seconds(5));
    status_timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec) return;
      notifier_.status(status_line());
      start_status_updates();
    });
  }

  std::string status_line() const {
    const auto d = dispatcher_->stats();
    const auto failure = writer_.unhealthy_reason();
    return "accepting referrals; store " + (failure.empty() ? std::string("ok") : "FAILING (" + failure + ")") +
           ", write queue " + std::to_string(writer_.queue_depth()) + "; deliveries in flight " +
           std::to_string(d.in_flight) + ", delivered " + std::to_string(d.delivered) + ", failed attempts " +
           std::to_string(d.transient + d.permanent + d.misconfigured);
  }

  asio::awaitable<void> shutdown() {
    // Stop taking requests and let those in flight reach their commits; then
    // stop claiming deliveries and give sends in progress a bounded time.
    co_await server_.stop(shutdown_grace);
    co_await escalations_.stop();
    co_await dispatcher_->stop(shutdown_grace);
    if (due_listener_) co_await due_listener_->stop();
    signals_.cancel();
    watchdog_timer_.cancel();
    status_timer_.cancel();
    // Everything has drained or timed out; what is left are idle timers.
    ioc_.stop();
  }

  void reload() {
    const auto& file = configuration_.config.file;
    spdlog::info("config.reload_started file={}", file.string());
    notifier_.reloading();
    struct ReadyAgain {
      const SystemdNotifier& n;
      std::function<std::string()> status;
      ~ReadyAgain() { n.ready(status()); }
    } ready_again{notifier_, [this] { return status_line(); }};
    ReloadOutcome outcome;
    try {
      auto next = load_configuration(file, load_options());
      auto targets = make_targets(next.config, adapter_context_);
      warn_restart_only(configuration_.config, next.config);
      intake_.set_policy(make_policy(next, identity_secret_));
      api_.set_api_keys(next.config.http.api_keys, next.config.http.office_api_keys);
      status_changes_.set_notice_targets(notice_targets_of(next.config));
      form_.set_public_origins(next.config.http.public_origins);
      dispatcher_->set_targets(std::move(targets), dispatcher_options(next.config));
      set_payload_keys(next.config.storage.keys);
      configuration_.rules = std::move(next.rules);
      configuration_.config.routes = next.config.routes;
      configuration_.config.escalations = next.config.escalations;
      configuration_.config.closed_loop = next.config.closed_loop;
      configuration_.config.intake = next.config.intake;
      configuration_.config.targets = next.config.targets;
      configuration_.config.storage.encryption_keys = next.config.storage.encryption_keys;
      configuration_.config.storage.keys = next.config.storage.keys;
      spdlog::info("config.reloaded targets={} routes={} diseases={} encryption_key={}",
                   configuration_.config.targets.size(), configuration_.config.routes.size(),
                   configuration_.rules.diseases.size(), encryption_key(configuration_.config));
      outcome.taken = true;
    } catch (const ConfigError& e) {
      log_problems(e, "config.reload_refused");
      spdlog::error("config.reload_refused note=\"the previous configuration keeps running\"");
      for (const auto& p : e.problems()) outcome.problems.push_back(p.to_string());
    } catch (const std::exception& e) {
      spdlog::error("config.reload_refused error=\"{}\" note=\"the previous configuration keeps running\"", e.what());
      outcome.problems.push_back(file.string() + ": " + e.what());
    }
    report_reload(std::move(outcome));
  }

  // Tells `referrald --reload` (the unit's ExecReload=) what became of the
  // file (service/reload.hpp); without $RUNTIME_DIRECTORY nobody is asking.
  void report_reload(ReloadOutcome outcome) {
    if (!runtime_directory_) return;
    outcome.pid = ::getpid();
    outcome.generation = ++reloads_;
    try {
      write_reload_outcome(*runtime_directory_, outcome);
    } catch (const std::exception& e) {
      spdlog::error("config.reload_outcome_unwritten error=\"{}\"", e.what());
    }
  }

  // Every connection seals and opens documents with these from its next job on.
  void set_payload_keys(const std::shared_ptr<const KeyRing>& keys) {
    writer_.set_payload_keys(keys);
    readers_.set_payload_keys(keys);
  }

  static std::string encryption_key(const Config& c) {
    return c.storage.keys ? c.storage.keys->current().id : std::string("none");
  }

  std::string dispatch_metrics() const {
    const auto s = dispatcher_->stats();
    std::string out;
    out += "# HELP referrald_delivery_attempts_total Delivery attempts by outcome.\n";
    out += "# TYPE referrald_delivery_attempts_total counter\n";
    out += "referrald_delivery_attempts_total{outcome=\"delivered\"} " + std::to_string(s.delivered) + "\n";
    out += "referrald_delivery_attempts_total{outcome=\"transient\"} " + std::to_string(s.transient) + "\n";
    out += "referrald_delivery_attempts_total{outcome=\"permanent\"} " + std::to_string(s.permanent) + "\n";
    out += "referrald_delivery_attempts_total{outcome=\"misconfigured\"} " + std::to_string(s.misconfigured) + "\n";
    out += "# HELP referrald_deliveries_in_flight Deliveries being sent now.\n";
    out += "# TYPE referrald_deliveries_in_flight gauge\n";
    out += "referrald_deliveries_in_flight " + std::to_string(s.in_flight) + "\n";
    out +=
        "# HELP referrald_delivery_outcomes_superseded_total Attempts whose outcome was dropped: the send outlived "
        "its lease and the delivery was claimed again.\n";
    out += "# TYPE referrald_delivery_outcomes_superseded_total counter\n";
    out += "referrald_delivery_outcomes_superseded_total " + std::to_string(s.superseded) + "\n";
    out += "# HELP referrald_http_responses_total HTTP responses by status code.\n";
    out += "# TYPE referrald_http_responses_total counter\n";
    for (const auto& [status, count] : server_.status_counts()) {
      out += "referrald_http_responses_total{code=\"" + std::to_string(status) + "\"} " + std::to_string(count) + "\n";
    }
    return out;
  }

  Configuration configuration_;
  SystemClock clock_;
  asio::io_context ioc_;
  static constexpr std::size_t blocking_threads = 2;
  asio::thread_pool blocking_{blocking_threads};
  CurlPool curl_{8};
  ReferralValidator validator_;
  store::Writer writer_;
  store::ReaderPool readers_;
  std::vector<unsigned char> identity_secret_;
  IntakeService intake_;
  http::StatusChanges status_changes_;  // the office API's and the acknowledgement link's changes
  http::Api api_;
  http::Fhir fhir_;  // FHIR R4 under /fhir/r4: the API hands it every path it does not serve
  http::Form form_;  // the web form: FHIR hands it every path it does not serve
  http::Server server_;
  std::shared_ptr<Dispatcher> dispatcher_;
  EscalationTimer escalations_;
  std::unique_ptr<store::DueListener> due_listener_;  // PostgreSQL only
  AdapterContext adapter_context_;
  asio::signal_set signals_;
  std::atomic<bool> shutting_down_{false};
  // run()'s result: 0, or EX_IOERR after the store's fail-stop (any status
  // but 78, the configuration's, has systemd start the service again).
  static constexpr int exit_io_error = 74;
  std::atomic<int> exit_code_{0};
  SystemdNotifier notifier_;
  const std::optional<std::filesystem::path> runtime_directory_ = runtime_directory();
  std::uint64_t reloads_ = 0;
  asio::steady_timer watchdog_timer_{ioc_};
  asio::steady_timer status_timer_{ioc_};
};

}  // namespace

namespace {

// PostgreSQL: the server can be reached, takes the login and holds a schema
// this build can use, or none yet (the first start makes it). What is
// wrong, in libpq's words where they are its.
std::optional<std::string> check_postgresql(const StorageConfig& storage) {
  if (storage.backend != StorageBackend::postgresql) return std::nullopt;
  try {
    store::Database db(storage_target(storage).postgres, store::OpenMode::read_only);
    store::checked_schema_version(db);
  } catch (const std::runtime_error& e) {  // DatabaseError, IncompatibleSchema
    return std::string(e.what());
  }
  return std::nullopt;
}

}  // namespace

int check_config(const std::filesystem::path& config_file, std::ostream& out, std::ostream& err) {
  try {
    // The channels' own checks run in the loader: their problems are in the same list.
    // Run by hand, not by systemd: secrets are where the unit loads them from.
    auto options = load_options();
    options.credential_fallbacks = credential_stores;
    const auto c = load_configuration(config_file, options);
    // The web form's pages, checked as the form checks them at start.
    http::check_web_dir(c.config.web_dir);
    // The identity hash's key file, read as start-up reads it (the
    // database's own secret, the last resort, needs no check).
    load_identity_key(c.config.intake.identity_key, c.config.storage.keys.get(), std::vector<unsigned char>(32, 0));
    if (auto problem = check_postgresql(c.config.storage)) {
      err << ConfigProblem{config_file.string(), c.config.storage.url_line, "storage.url", *problem}.to_string()
          << "\n";
      return 1;
    }
    out << config_file.string() << ": configuration OK (" << c.config.targets.size() << " targets, "
        << c.config.routes.size() << " routes, " << c.rules.diseases.size() << " diseases)\n";
    return 0;
  } catch (const ConfigError& e) {
    for (const auto& p : e.problems()) err << p.to_string() << "\n";
  } catch (const std::exception& e) {
    err << config_file.string() << ": " << e.what() << "\n";
  }
  return 1;
}

int run_daemon(const std::filesystem::path& config_file) {
  setup_logging("info", detect_log_target());
  std::optional<Configuration> configuration;
  try {
    configuration = load_configuration(config_file, load_options());
  } catch (const ConfigError& e) {
    log_problems(e, "config.invalid");
    spdlog::critical("referrald.start_failed reason=\"invalid configuration\" file={}", config_file.string());
    // EX_CONFIG: the unit's RestartPreventExitStatus= keeps systemd from
    // restarting what only an edit can fix.
    return exit_invalid_configuration;
  }
  setup_logging(configuration->config.log_level, detect_log_target());
  try {
    Daemon daemon(std::move(*configuration));
    return daemon.run();
  } catch (const std::exception& e) {
    spdlog::critical("referrald.start_failed error=\"{}\"", e.what());
    return 1;
  }
}

}  // namespace referrald
