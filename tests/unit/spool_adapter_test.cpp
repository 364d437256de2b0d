// The spool target: deliveries sent at once are written together (one
// data barrier, one directory fsync), and each gets its own outcome.
#include "adapters/spool/spool_adapter.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace referrald {
namespace {

namespace asio = boost::asio;

class SpoolAdapterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "referrald-spool-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
    target_.name = "office-email";
    target_.type = "spool";
    target_.settings["directory"] = (root_ / "spool").string();
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  static Delivery delivery(int n, int attempt = 1) {
    Delivery d;
    d.id = n;
    d.referral_id = "R-20261207-0000" + std::to_string(n % 10) + "-ABCD" + std::to_string(n % 10);
    d.identity = "delivery-" + std::to_string(n);
    d.target = "office-email";
    d.attempt = attempt;
    d.received_at = std::chrono::system_clock::time_point(std::chrono::seconds(1796601600));
    d.decision = Decision::accepted;
    d.urgency = Urgency::urgent;
    d.document = R"({"patient":{"given_name":"Ada","number":)" + std::to_string(n) + "}}";
    return d;
  }

  nlohmann::json file(const std::string& identity) const {
    std::ifstream in(root_ / "spool" / (identity + ".json"));
    return nlohmann::json::parse(std::string(std::istreambuf_iterator<char>(in), {}));
  }

  std::filesystem::path root_;
  TargetConfig target_;
};

TEST_F(SpoolAdapterTest, ManySentAtOnceEachBecomesItsWholeFileOwnerOnly) {
  asio::io_context io;
  asio::thread_pool blocking(2);
  SpoolAdapter adapter(target_, blocking.get_executor());
  constexpr std::size_t count = 200;
  std::vector<Delivery> deliveries;
  for (std::size_t i = 0; i < count; ++i) deliveries.push_back(delivery(static_cast<int>(i)));
  std::vector<Outcome> outcomes(count);
  for (std::size_t i = 0; i < count; ++i) {
    asio::co_spawn(
        io, [&, i]() -> asio::awaitable<void> { outcomes[i] = co_await adapter.send(deliveries[i]); }, asio::detached);
  }
  io.run();
  blocking.join();

  for (std::size_t i = 0; i < count; ++i) {
    ASSERT_EQ(outcomes[i].kind, OutcomeClass::delivered) << i << ": " << outcomes[i].message;
    const auto doc = file(deliveries[i].identity);
    EXPECT_EQ(doc["delivery"], deliveries[i].identity);
    EXPECT_EQ(doc["referral"]["patient"]["number"], i);
    struct stat st {};
    ASSERT_EQ(::stat((root_ / "spool" / (deliveries[i].identity + ".json")).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
  }
  // Nothing but the files: no temporary file left behind.
  EXPECT_EQ(static_cast<std::size_t>(std::distance(std::filesystem::directory_iterator(root_ / "spool"), {})), count);
}

TEST_F(SpoolAdapterTest, TheSameDeliveryTwiceInFlightLeavesOneWholeFile) {
  // A send whose lease ran out is claimed and sent again while the first
  // still waits: both finish, and the file is one of them, whole.
  asio::io_context io;
  asio::thread_pool blocking(2);
  SpoolAdapter adapter(target_, blocking.get_executor());
  const Delivery first = delivery(7, 1);
  const Delivery again = delivery(7, 2);
  std::vector<Outcome> outcomes(2);
  asio::co_spawn(
      io, [&]() -> asio::awaitable<void> { outcomes[0] = co_await adapter.send(first); }, asio::detached);
  asio::co_spawn(
      io, [&]() -> asio::awaitable<void> { outcomes[1] = co_await adapter.send(again); }, asio::detached);
  io.run();
  blocking.join();
  EXPECT_EQ(outcomes[0].kind, OutcomeClass::delivered) << outcomes[0].message;
  EXPECT_EQ(outcomes[1].kind, OutcomeClass::delivered) << outcomes[1].message;
  const auto doc = file(first.identity);
  EXPECT_TRUE(doc["attempt"] == 1 || doc["attempt"] == 2) << doc.dump();
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(root_ / "spool"), {}), 1);
}

TEST_F(SpoolAdapterTest, AFileThatCannotBeRenamedFailsAloneAndTheOthersAreWritten) {
  SpoolAdapter adapter(target_, asio::system_executor());
  // The second delivery's name is taken by a directory with something in it.
  std::filesystem::create_directories(root_ / "spool" / "delivery-2.json" / "inside");
  const Delivery a = delivery(1), b = delivery(2), c = delivery(3);
  const auto outcomes = adapter.write({&a, &b, &c});
  ASSERT_EQ(outcomes.size(), 3u);
  EXPECT_EQ(outcomes[0].kind, OutcomeClass::delivered) << outcomes[0].message;
  EXPECT_EQ(outcomes[1].kind, OutcomeClass::misconfigured) << outcomes[1].message;
  EXPECT_EQ(outcomes[1].message.rfind("rename: ", 0), 0u) << outcomes[1].message;
  EXPECT_EQ(outcomes[2].kind, OutcomeClass::delivered) << outcomes[2].message;
  EXPECT_EQ(file("delivery-1")["delivery"], "delivery-1");
  EXPECT_EQ(file("delivery-3")["delivery"], "delivery-3");
  EXPECT_FALSE(std::filesystem::exists(root_ / "spool" / ".delivery-2.tmp"));
}

TEST_F(SpoolAdapterTest, ASpoolDirectoryThatIsGoneFailsEveryDeliveryAsMisconfigured) {
  SpoolAdapter adapter(target_, asio::system_executor());
  std::filesystem::remove_all(root_ / "spool");
  std::ofstream(root_ / "spool") << "not a directory\n";
  const Delivery a = delivery(1), b = delivery(2);
  const auto outcomes = adapter.write({&a, &b});
  for (const auto& o : outcomes) {
    EXPECT_EQ(o.kind, OutcomeClass::misconfigured) << o.message;
    EXPECT_EQ(o.message.rfind("open: ", 0), 0u) << o.message;
  }
}

}  // namespace
}  // namespace referrald
