#include "core/subprocess.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace nex {
namespace {

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(Subprocess, RunsWithEnvironmentAndRedirectedOutput) {
  const auto out =
      std::filesystem::temp_directory_path() / ("nex-subprocess-" + std::to_string(getpid()));
  std::filesystem::remove(out);
  auto p = Subprocess::spawn({.argv = {"sh", "-c", "echo \"$GREETING\"; exit 3"},
                              .env = {"GREETING=hello"},
                              .stdout_path = out.string()});
  ASSERT_TRUE(p) << p.error().message;
  auto status = p->wait_for(std::chrono::seconds(10));
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 3);
  EXPECT_EQ(read_file(out), "hello\n");
  std::filesystem::remove(out);
}

TEST(Subprocess, MissingProgramIsAnError) {
  auto p = Subprocess::spawn({.argv = {"/nonexistent/program"}});
  ASSERT_FALSE(p);
  EXPECT_NE(p.error().message.find("cannot execute /nonexistent/program"), std::string::npos);
}

// Another process still holding the program open for writing (as a child forked while the
// file was written does, until it execs) makes exec fail with ETXTBSY for a moment: spawn waits
// that out instead of failing the deploy.
TEST(Subprocess, AProgramBusyForAMomentStillStarts) {
  const auto program =
      std::filesystem::temp_directory_path() / ("nex-busy-" + std::to_string(getpid()));
  std::filesystem::copy_file("/bin/true", program,
                             std::filesystem::copy_options::overwrite_existing);
  const int writer = ::open(program.c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(writer, 0);
  std::thread closer([writer] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ::close(writer);
  });
  auto p = Subprocess::spawn({.argv = {program.string()}});
  closer.join();
  ASSERT_TRUE(p) << p.error().message;
  auto status = p->wait_for(std::chrono::seconds(10));
  ASSERT_TRUE(status);
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  std::filesystem::remove(program);
}

// The one descriptor a program is handed (an agent's trigger channel) is its descriptor 3, and
// no other of the parent's reaches it, not even one opened without O_CLOEXEC.
TEST(Subprocess, APassedDescriptorIsThreeAndTheOnlyOneInherited) {
  int channel[2];
  ASSERT_EQ(::pipe2(channel, O_CLOEXEC), 0);
  const int leaked = ::open("/dev/null", O_RDONLY);  // no O_CLOEXEC
  ASSERT_GE(leaked, 0);
  const auto out =
      std::filesystem::temp_directory_path() / ("nex-passed-fd-" + std::to_string(getpid()));
  std::filesystem::remove(out);
  const std::string script = "echo through-three >&3; [ -e /proc/$$/fd/" + std::to_string(leaked) +
                             " ] && echo leaked || echo alone";
  auto p = Subprocess::spawn(
      {.argv = {"sh", "-c", script}, .stdout_path = out.string(), .pass_fd = channel[1]});
  ::close(channel[1]);
  ::close(leaked);
  ASSERT_TRUE(p) << p.error().message;
  ASSERT_TRUE(p->wait_for(std::chrono::seconds(10)));
  char buf[64] = {};
  const ssize_t n = ::read(channel[0], buf, sizeof buf - 1);
  ::close(channel[0]);
  EXPECT_EQ(std::string(buf, n > 0 ? static_cast<size_t>(n) : 0), "through-three\n");
  EXPECT_EQ(read_file(out), "alone\n");
  std::filesystem::remove(out);
}

TEST(Subprocess, TerminateEscalatesToSigkill) {
  // A child that ignores SIGTERM is killed after the grace period.
  auto p = Subprocess::spawn({.argv = {"sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"}});
  ASSERT_TRUE(p);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const int status = p->terminate(std::chrono::milliseconds(200));
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  EXPECT_FALSE(p->running());
}

TEST(Subprocess, DestructorReapsTheChild) {
  pid_t pid;
  {
    auto p = Subprocess::spawn({.argv = {"sleep", "30"}});
    ASSERT_TRUE(p);
    pid = p->pid();
  }
  EXPECT_NE(::kill(pid, 0), 0);  // gone, and reaped (no zombie)
}

TEST(RunProgram, HandsItsInputAndCollectsBothOutputs) {
  auto run = run_program({.argv = {"sh", "-c", "cat; echo trouble >&2; exit 4"}}, "hello\n",
                         std::chrono::seconds(10));
  ASSERT_TRUE(run) << run.error().message;
  EXPECT_EQ(run->out, "hello\n");
  EXPECT_EQ(run->err, "trouble\n");
  ASSERT_TRUE(WIFEXITED(run->status));
  EXPECT_EQ(WEXITSTATUS(run->status), 4);
  EXPECT_FALSE(run->succeeded());
}

// More than a pipe holds, both ways: the input is written while the output is read, or the
// program and its caller would wait on each other forever.
TEST(RunProgram, PassesMoreThanAPipeHoldsThrough) {
  const std::string big(4 << 20, 'x');
  auto run = run_program({.argv = {"cat"}}, big, std::chrono::seconds(30));
  ASSERT_TRUE(run) << run.error().message;
  EXPECT_TRUE(run->succeeded());
  EXPECT_EQ(run->out.size(), big.size());
}

// A program that ends without reading its input must not take its caller down with SIGPIPE.
TEST(RunProgram, AProgramThatIgnoresItsInputIsNoHarm) {
  auto run = run_program({.argv = {"true"}}, std::string(1 << 20, 'x'), std::chrono::seconds(10));
  ASSERT_TRUE(run) << run.error().message;
  EXPECT_TRUE(run->succeeded());
}

// No shell reads the arguments: a quote or a space in a path is just part of the path.
TEST(RunProgram, TakesPathsWithAQuoteAndASpace) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("nex it's-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const auto program = dir / "say it's";
  {
    std::ofstream script(program);
    script << "#!/bin/sh\nprintf '%s|%s' \"$1\" \"$(pwd)\"\n";
  }
  std::filesystem::permissions(program, std::filesystem::perms(0755));
  auto run = run_program({.argv = {program.string(), "it's here"}, .working_dir = dir}, "",
                         std::chrono::seconds(10));
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(run) << run.error().message;
  EXPECT_TRUE(run->succeeded()) << run->err;
  EXPECT_EQ(run->out, "it's here|" + dir.string());
}

TEST(RunProgram, EndsAHangingProgramAtTheTimeout) {
  const auto start = std::chrono::steady_clock::now();
  // The shell's own child holds the output pipe open too: it is ended with it.
  auto run = run_program({.argv = {"sh", "-c", "sleep 30 & sleep 30"}}, "",
                         std::chrono::milliseconds(300));
  ASSERT_FALSE(run);
  EXPECT_EQ(run.error().code, ErrorCode::kTimeout);
  EXPECT_EQ(run.error().message, "sh did not finish within 300 ms, so it was killed");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST(RunProgram, AMissingProgramIsAClearError) {
  auto run = run_program({.argv = {"/nonexistent/program"}}, "", std::chrono::seconds(10));
  ASSERT_FALSE(run);
  EXPECT_EQ(run.error().message,
            "spawn: cannot execute /nonexistent/program: No such file or directory");
}

// The unit tests are built beside the gateway they start, as nex is beside nex-agent.
TEST(ProgramBesideSelf, NamesAProgramBuiltBesideThisOne) {
  const auto gateway = program_beside_self("nex-vm-gateway");
  EXPECT_EQ(gateway.filename(), "nex-vm-gateway");
  EXPECT_EQ(::access(gateway.c_str(), X_OK), 0) << gateway;
}

TEST(RunProgram, AMissingWorkingDirectoryIsAClearError) {
  auto run = run_program({.argv = {"true"}, .working_dir = "/nonexistent/dir"}, "",
                         std::chrono::seconds(10));
  ASSERT_FALSE(run);
  EXPECT_EQ(run.error().message,
            "spawn: cannot start true in /nonexistent/dir: No such file or directory");
}

}  // namespace
}  // namespace nex
