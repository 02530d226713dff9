#include "core/file_io.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

namespace nex {
namespace {

namespace fs = std::filesystem;

fs::path temp_path(const std::string& name) {
  return fs::temp_directory_path() / ("nex-file-io-" + name + "-" + std::to_string(::getpid()));
}

// Every byte comes back, zeros included, from a file larger than one read takes.
TEST(ReadFile, ReturnsTheWholeContentAsItIs) {
  std::string data(200000, 'a');
  data[7] = '\0';
  data.back() = '\n';
  const fs::path path = temp_path("whole");
  ASSERT_TRUE(write_file(path, data));
  auto read = read_file(path);
  fs::remove(path);
  ASSERT_TRUE(read) << read.error().message;
  EXPECT_EQ(*read, data);
}

TEST(ReadFile, AnEmptyFileIsAnEmptyString) {
  const fs::path path = temp_path("empty");
  ASSERT_TRUE(write_file(path, ""));
  auto read = read_file(path);
  fs::remove(path);
  ASSERT_TRUE(read) << read.error().message;
  EXPECT_EQ(*read, "");
}

// Files the kernel makes up as they are read say their size is 0: they are read all the same.
TEST(ReadFile, ReadsAProcFile) {
  auto read = read_file("/proc/self/status");
  ASSERT_TRUE(read) << read.error().message;
  EXPECT_NE(read->find("Pid:"), std::string::npos);
}

TEST(ReadFile, AMissingFileSaysWhichAndWhy) {
  auto read = read_file("/nonexistent/nex-file");
  ASSERT_FALSE(read);
  EXPECT_EQ(read.error().code, ErrorCode::kIo);
  EXPECT_EQ(read.error().message, "cannot read /nonexistent/nex-file: No such file or directory");
}

TEST(ReadFile, ADirectoryIsNotAFile) {
  auto read = read_file(fs::temp_directory_path());
  ASSERT_FALSE(read);
  EXPECT_EQ(read.error().message,
            "cannot read " + fs::temp_directory_path().string() + ": Is a directory");
}

}  // namespace
}  // namespace nex
