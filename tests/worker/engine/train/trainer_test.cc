#include "worker/engine/train/trainer.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "common/file_io.h"
#include "tests/testing/tiny_trainer_options.h"
#include "worker/engine/data/image_codec.h"
#include "worker/engine/train/checkpoint.h"
#include "worker/engine/util/json.h"

namespace clmae {
namespace {

namespace fs = std::filesystem;

class Recorder : public TrainObserver {
 public:
  void OnStep(const StepReport& r) override { reports.push_back(r); }
  void OnQuality(const QualityReport& q) override { quality.push_back(q); }
  void OnPhase(const std::string& phase) override { phases.push_back(phase); }
  void OnMessage(const std::string& message) override { messages.push_back(message); }
  std::vector<StepReport> reports;
  std::vector<std::string> messages;
  std::vector<QualityReport> quality;
  std::vector<std::string> phases;
};

class TrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("trainer-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // The tiny job over 3 epochs, logging every iteration.
  TrainerOptions Options(const std::string& out) {
    TrainerOptions o = ::clmae::testing::TinyTrainerOptions((dir_ / out).string());
    o.epochs = 3;
    o.log_every = 1;
    return o;
  }

  static std::vector<torch::Tensor> Weights(Trainer& t) {
    std::vector<torch::Tensor> w;
    for (auto& p : t.mae()->parameters()) w.push_back(p.detach().clone());
    if (!t.masker().is_empty()) {
      for (auto& p : t.masker()->parameters()) w.push_back(p.detach().clone());
    }
    return w;
  }

  void ExpectResumeBitForBit(TrainerOptions o, int64_t split) {
    // 12 iterations straight (3 epochs of 5, stopped at 12: mid-epoch).
    o.max_steps = 12;
    auto straight = Trainer::Create(o, nullptr, nullptr);
    ASSERT_TRUE(straight.ok()) << straight.status();
    ASSERT_TRUE((*straight)->Run().ok());

    // `split` iterations, checkpoint, then a fresh trainer resumes to 12.
    auto first = o;
    first.output_dir = (dir_ / "split").string();
    first.max_steps = split;
    auto a = Trainer::Create(first, nullptr, nullptr);
    ASSERT_TRUE(a.ok());
    ASSERT_TRUE((*a)->Run().ok());
    auto second = first;
    second.max_steps = 12;
    second.resume_from = "auto";
    auto b = Trainer::Create(second, nullptr, nullptr);
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_EQ((*b)->step(), split);
    ASSERT_TRUE((*b)->Run().ok());
    auto w1 = Weights(**straight), w2 = Weights(**b);
    ASSERT_EQ(w1.size(), w2.size());
    for (size_t i = 0; i < w1.size(); ++i)
      EXPECT_TRUE(torch::equal(w1[i], w2[i])) << "tensor " << i;
  }

  fs::path dir_;
};

TEST_F(TrainerTest, ResumeContinuesBitForBitClMae) {
  ExpectResumeBitForBit(Options("straight"), 7);
}

TEST_F(TrainerTest, ResumeContinuesBitForBitPlainMaeWithAccumulation) {
  auto o = Options("straight");
  o.plain_mae = true;
  o.step.accum_iter = 2;
  o.loader.num_workers = 2;
  // Split at an accumulation boundary: a run that stops mid-window applies its
  // partial window, which an uninterrupted run would not.
  ExpectResumeBitForBit(o, 6);
}

// Raises the stop request once an iteration reaches `at`.
class StopAt : public TrainObserver {
 public:
  StopAt(std::atomic<bool>* stop, int64_t at) : stop_(stop), at_(at) {}
  void OnStep(const StepReport& report) override {
    if (report.step >= at_) stop_->store(true);
  }

 private:
  std::atomic<bool>* stop_;
  int64_t at_;
};

TEST_F(TrainerTest, AStopRequestEndsAtTheNextBoundaryWithACheckpointThatResumesBitForBit) {
  auto o = Options("straight");
  o.step.accum_iter = 2;
  o.max_steps = 12;
  auto straight = Trainer::Create(o, nullptr, nullptr);
  ASSERT_TRUE(straight.ok()) << straight.status();
  ASSERT_TRUE((*straight)->Run().ok());

  // Asked after iteration 3 (mid accumulation window): stops after 4.
  auto stopped = o;
  stopped.output_dir = (dir_ / "stopped").string();
  std::atomic<bool> stop{false};
  stopped.stop_requested = &stop;
  StopAt observer(&stop, 3);
  auto a = Trainer::Create(stopped, nullptr, &observer);
  ASSERT_TRUE(a.ok()) << a.status();
  const absl::Status status = (*a)->Run();
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
  EXPECT_NE(std::string(status.message()).find("stopped on request at step 4"), std::string::npos)
      << status;
  EXPECT_EQ((*a)->step(), 4);
  EXPECT_TRUE(fs::exists(fs::path(stopped.output_dir) / "checkpoints" / "step-000000004.ckpt"));
  EXPECT_FALSE(fs::exists(fs::path(stopped.output_dir) / "weights.safetensors"));

  auto resumed = stopped;
  resumed.stop_requested = nullptr;
  resumed.resume_from = "auto";
  auto b = Trainer::Create(resumed, nullptr, nullptr);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*b)->step(), 4);
  ASSERT_TRUE((*b)->Run().ok());
  auto w1 = Weights(**straight), w2 = Weights(**b);
  ASSERT_EQ(w1.size(), w2.size());
  for (size_t i = 0; i < w1.size(); ++i) EXPECT_TRUE(torch::equal(w1[i], w2[i])) << "tensor " << i;
}

TEST_F(TrainerTest, UndecodableImagesAreReportedAtTheEnd) {
  if (!ImageCodecAvailable(ImageFormat::kPng)) GTEST_SKIP() << "built without libpng";
  const fs::path folder = dir_ / "images" / "a";
  fs::create_directories(folder);
  for (int i = 0; i < 40; ++i) {
    auto png = EncodePng((torch::rand({1, 16, 16}) * 255).to(torch::kUInt8));
    ASSERT_TRUE(png.ok()) << png.status();
    ASSERT_TRUE(WriteFileAtomically((folder / (std::to_string(i) + ".png")).string(), *png).ok());
  }
  ASSERT_TRUE(WriteFileAtomically((folder / "zz-broken.png").string(), "not a png").ok());
  auto o = Options("out");
  o.data.kind = DatasetOptions::Kind::kImageFolder;
  o.data.path = (dir_ / "images").string();
  Recorder recorder;
  auto trainer = Trainer::Create(o, nullptr, &recorder);
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  ASSERT_TRUE((*trainer)->Run().ok());
  bool reported = false;
  for (const std::string& m : recorder.messages) {
    reported = reported || m.find("could not be decoded and were skipped") != std::string::npos;
  }
  EXPECT_TRUE(reported) << "messages: " << recorder.messages.size();
}

TEST_F(TrainerTest, WritesLogCheckpointsPreviewsAndExports) {
  auto o = Options("run");
  o.checkpoint_every = 5;
  o.keep_checkpoints = 2;
  o.preview_every = 5;
  o.export_safetensors = true;
  Recorder rec;
  auto t = Trainer::Create(o, nullptr, &rec);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_TRUE((*t)->Run().ok());
  EXPECT_EQ((*t)->step(), 15);
  ASSERT_EQ(rec.reports.size(), 15u);
  EXPECT_DOUBLE_EQ(rec.reports.front().lambda_cl, 1.0);  // epoch 0 of 3
  EXPECT_DOUBLE_EQ(rec.reports.back().lambda_cl, -1.0);  // epoch 2 of 3: 1 - 2*3/3
  const fs::path out(o.output_dir);
  // Checkpoints at 5, 10 and the final 15; only the newest 2 are kept.
  EXPECT_FALSE(fs::exists(out / "checkpoints" / "step-000000005.ckpt"));
  EXPECT_TRUE(fs::exists(out / "checkpoints" / "step-000000010.ckpt"));
  EXPECT_TRUE(fs::exists(out / "checkpoints" / "step-000000015.ckpt"));
  EXPECT_TRUE(fs::exists(out / "previews" / "step-000000005.png"));
  EXPECT_TRUE(fs::exists(out / "previews" / "step-000000015.png"));
  EXPECT_TRUE(fs::exists(out / "weights.safetensors"));
  EXPECT_TRUE(fs::exists(out / "encoder.safetensors"));
  std::ifstream log(out / "metrics.jsonl");
  int lines = 0;
  for (std::string line; std::getline(log, line); ++lines) {
    EXPECT_NE(line.find("\"masker_kl\":"), std::string::npos);
  }
  EXPECT_EQ(lines, 15);
}

// The device runs ahead and the figures are read at log steps: the log
// has a line for every iteration, with the same values as a run that reads
// them every iteration, and the observer sees the logged ones.
TEST_F(TrainerTest, FiguresReadAtLogStepsMatchThoseReadEveryIteration) {
  auto every = Options("every");
  auto fifth = Options("fifth");
  fifth.log_every = 5;
  Recorder rec_every, rec_fifth;
  auto a = Trainer::Create(every, nullptr, &rec_every);
  auto b = Trainer::Create(fifth, nullptr, &rec_fifth);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE((*a)->Run().ok());
  ASSERT_TRUE((*b)->Run().ok());
  EXPECT_EQ(rec_every.reports.size(), 15u);
  ASSERT_EQ(rec_fifth.reports.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    const StepReport& x = rec_every.reports[5 * i + 4];
    const StepReport& y = rec_fifth.reports[i];
    EXPECT_EQ(x.step, y.step);
    EXPECT_DOUBLE_EQ(x.stats.loss_mae, y.stats.loss_mae);
    EXPECT_DOUBLE_EQ(x.stats.masker_total, y.stats.masker_total);
    EXPECT_DOUBLE_EQ(x.stats.grad_norm_masker, y.stats.grad_norm_masker);
  }
  auto lines = [](const std::string& dir) {
    std::ifstream log(fs::path(dir) / "metrics.jsonl");
    std::vector<std::string> out;
    for (std::string line; std::getline(log, line);) {
      // Drop the timings, which differ from run to run.
      out.push_back(line.substr(0, line.find(",\"data_s\"")));
    }
    return out;
  };
  const auto l1 = lines(every.output_dir), l2 = lines(fifth.output_dir);
  ASSERT_EQ(l1.size(), 15u);
  EXPECT_EQ(l1, l2);
}

// A stop asked between reads is seen at the next read (a log step) and
// honoured at the accumulation boundary after it.
TEST_F(TrainerTest, AStopSeenAtALogStepEndsAtTheNextBoundary) {
  auto o = Options("stopped");
  o.log_every = 3;
  o.step.accum_iter = 2;
  std::atomic<bool> stop{false};
  o.stop_requested = &stop;
  // Raised at logged step 6, seen at the read of step 9 (mid window): the
  // run goes on to step 10 and stops there.
  StopAt observer(&stop, 6);
  auto t = Trainer::Create(o, nullptr, &observer);
  ASSERT_TRUE(t.ok()) << t.status();
  const absl::Status status = (*t)->Run();
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
  EXPECT_NE(std::string(status.message()).find("stopped on request at step 10"), std::string::npos)
      << status;
  EXPECT_TRUE(fs::exists(fs::path(o.output_dir) / "checkpoints" / "step-000000010.ckpt"));
}

TEST_F(TrainerTest, NonFiniteLossStopsAndKeepsTheLastGoodCheckpoint) {
  // Three good iterations with a checkpoint after each, then a resumed run
  // whose absurd learning rate makes the losses overflow.
  auto o = Options("nan");
  o.checkpoint_every = 1;
  o.max_steps = 3;
  auto good = Trainer::Create(o, nullptr, nullptr);
  ASSERT_TRUE(good.ok());
  ASSERT_TRUE((*good)->Run().ok());
  auto bad = o;
  bad.max_steps = 0;
  bad.lr = 1e30;
  bad.warmup_epochs = 0;
  bad.resume_from = "auto";
  auto t = Trainer::Create(bad, nullptr, nullptr);
  ASSERT_TRUE(t.ok()) << t.status();
  auto status = (*t)->Run();
  ASSERT_FALSE(status.ok());
  const std::string msg(status.message());
  EXPECT_NE(msg.find("non-finite"), std::string::npos) << msg;
  EXPECT_NE(msg.find("phase"), std::string::npos) << msg;
  EXPECT_NE(msg.find("last good checkpoint"), std::string::npos) << msg;
  // The newest checkpoint on disk is still a good one: it loads, finite.
  auto resume = o;
  resume.resume_from = FindLatestCheckpoint(o.output_dir);
  auto r = Trainer::Create(resume, nullptr, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  for (auto& w : Weights(**r)) EXPECT_TRUE(torch::isfinite(w).all().item<bool>());
}

TEST_F(TrainerTest, BadInputsNameTheProblem) {
  auto missing = Options("x");
  missing.data.kind = DatasetOptions::Kind::kIdx;
  missing.data.path = (dir_ / "no-such-dataset").string();
  auto t = Trainer::Create(missing, nullptr, nullptr);
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(t.status().message().find("no-such-dataset"), std::string::npos) << t.status();

  auto chans = Options("x");
  chans.model.in_chans = 3;
  chans.transform.mean = {0.5};
  chans.transform.std = {0.25};
  EXPECT_NE(Trainer::Create(chans, nullptr, nullptr).status().message().find("in_chans"),
            std::string::npos);

  auto big = Options("x");
  big.loader.batch_size = 64;
  EXPECT_NE(Trainer::Create(big, nullptr, nullptr).status().message().find("batch_size"),
            std::string::npos);

  auto bf16 = Options("x");
  bf16.step.bf16 = true;
  EXPECT_EQ(Trainer::Create(bf16, nullptr, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);

  auto device = Options("x");
  device.device = "tpu";
  EXPECT_NE(Trainer::Create(device, nullptr, nullptr).status().message().find("train.device"),
            std::string::npos);

  auto ratio = Options("x");
  ratio.step.mask_ratio = 1.0;
  EXPECT_NE(Trainer::Create(ratio, nullptr, nullptr).status().message().find("mask_ratio"),
            std::string::npos);

  auto patch = Options("x");
  patch.model.patch_size = 5;
  EXPECT_NE(Trainer::Create(patch, nullptr, nullptr).status().message().find("patch_size"),
            std::string::npos);

  auto resume = Options("x");
  resume.resume_from = (dir_ / "nope.ckpt").string();
  EXPECT_EQ(Trainer::Create(resume, nullptr, nullptr).status().code(), absl::StatusCode::kNotFound);
}

// A short run on real data: the MAE's reconstruction loss falls.
// Evaluation on two synthetic labelled splits (20 train / 10 test images).
void EnableEval(TrainerOptions& o, int every_epochs) {
  o.eval_enabled = true;
  o.eval_train = o.data;
  o.eval_train.synthetic_size = 20;
  o.eval_train.synthetic_seed = 1;
  o.eval_test = o.data;
  o.eval_test.synthetic_size = 10;
  o.eval_test.synthetic_seed = 2;
  o.eval.knn_k = 3;
  o.eval.probe_epochs = 0;
  o.eval_every_epochs = every_epochs;
  o.eval_periodic = o.eval;
}

TEST_F(TrainerTest, EvaluatesBeforeTrainingAndEveryEpochAndEndsWithBaselines) {
  auto o = Options("quality");
  EnableEval(o, 1);
  Recorder rec;
  auto t = Trainer::Create(o, nullptr, &rec);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_TRUE((*t)->Run().ok());

  // Before the first iteration and after each of the 3 epochs of 5.
  ASSERT_EQ(rec.quality.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(rec.quality[i].step, 5 * i);
    EXPECT_DOUBLE_EQ(rec.quality[i].epoch, i);
    EXPECT_EQ(rec.quality[i].train_images, 20);
    EXPECT_EQ(rec.quality[i].test_images, 10);
    EXPECT_GE(rec.quality[i].knn_top1, 0);
    EXPECT_LE(rec.quality[i].knn_top1, 1);
  }
  EXPECT_DOUBLE_EQ(rec.quality[0].lambda_cl, 1.0);
  // Every evaluation is bracketed by "eval" and "train"; "finish" last.
  ASSERT_EQ(rec.phases.size(), 9u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(rec.phases[2 * i], "eval");
    EXPECT_EQ(rec.phases[2 * i + 1], "train");
  }
  EXPECT_EQ(rec.phases.back(), "finish");

  // The final evaluation has both feature kinds and the baselines. The
  // untrained encoder is the run's own starting point: on the same images it
  // scores what the evaluation before the first iteration scored.
  const auto& r = (*t)->eval_result();
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(std::isnan(r->probe_top1));
  EXPECT_DOUBLE_EQ(r->random_init_knn_top1, rec.quality[0].knn_top1);
  EXPECT_DOUBLE_EQ(r->random_init_knn_top1_patch_mean, rec.quality[0].knn_top1_patch_mean);
  EXPECT_DOUBLE_EQ(r->knn_top1, rec.quality[3].knn_top1);  // trained: the last one's
  EXPECT_GE(r->raw_pixels_knn_top1, 0);
  EXPECT_LE(r->raw_pixels_knn_top1, 1);

  const fs::path out(o.output_dir);
  std::ifstream eval_file(out / "eval.json");
  std::string text((std::istreambuf_iterator<char>(eval_file)), std::istreambuf_iterator<char>());
  auto json = ParseJson(text);
  ASSERT_TRUE(json.ok()) << json.status() << ": " << text;
  const auto& fields = json->object();
  for (const char* key : {"knn_top1", "knn_top1_patch_mean", "raw_pixels_knn_top1",
                          "random_init_knn_top1", "random_init_knn_top1_patch_mean"}) {
    ASSERT_TRUE(fields.contains(key) && fields.at(key).is_number()) << key << " in " << text;
  }
  EXPECT_DOUBLE_EQ(fields.at("raw_pixels_knn_top1").number(),
                   std::round(r->raw_pixels_knn_top1 * 1e6) / 1e6);
  EXPECT_FALSE(fields.at("probe_top1").is_number());  // null: no probe

  // metrics.jsonl: 15 iteration lines and 4 "eval" lines.
  std::ifstream log(out / "metrics.jsonl");
  int steps = 0, evals = 0;
  for (std::string line; std::getline(log, line);) {
    auto entry = ParseJson(line);
    ASSERT_TRUE(entry.ok()) << line;
    if (entry->object().contains("event")) {
      EXPECT_EQ(entry->object().at("event").string(), "eval");
      EXPECT_EQ(entry->object().at("step").number(), 5 * evals);
      EXPECT_TRUE(entry->object().at("knn_top1_patch_mean").is_number());
      ++evals;
    } else {
      ++steps;
    }
  }
  EXPECT_EQ(steps, 15);
  EXPECT_EQ(evals, 4);
}

TEST_F(TrainerTest, EvaluatesEveryNthEpochAndNotAtAllWhenOff) {
  auto o = Options("every2");
  EnableEval(o, 2);
  Recorder every2;
  auto t = Trainer::Create(o, nullptr, &every2);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_TRUE((*t)->Run().ok());
  ASSERT_EQ(every2.quality.size(), 2u);  // epochs 0 and 2 of 3
  EXPECT_EQ(every2.quality[0].step, 0);
  EXPECT_EQ(every2.quality[1].step, 10);

  auto off = Options("off");
  EnableEval(off, 0);
  Recorder none;
  auto u = Trainer::Create(off, nullptr, &none);
  ASSERT_TRUE(u.ok()) << u.status();
  ASSERT_TRUE((*u)->Run().ok());
  EXPECT_TRUE(none.quality.empty());
  EXPECT_TRUE((*u)->eval_result().has_value());  // the final one still runs
}

TEST_F(TrainerTest, AMissingEvaluationDatasetFailsBeforeTraining) {
  auto o = Options("missing-eval");
  EnableEval(o, 1);
  o.eval_test.kind = DatasetOptions::Kind::kIdx;
  o.eval_test.path = (dir_ / "no-such-dataset").string();
  o.eval_test.split = "test";
  auto t = Trainer::Create(o, nullptr, nullptr);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound) << t.status();
  EXPECT_NE(t.status().message().find("no-such-dataset"), std::string::npos) << t.status();
}

TEST_F(TrainerTest, FashionMnistLossFalls) {
  if (!fs::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")) {
    GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  }
  auto o = Options("fmnist");
  o.model.img_size = 28;
  o.model.embed_dim = 32;
  o.model.depth = 2;
  o.data.kind = DatasetOptions::Kind::kIdx;
  o.data.path = "/usr/share/datasets/fashion-mnist";
  o.data_limit = 1280;
  o.transform.mean = {0.2860};
  o.transform.std = {0.3530};
  o.loader.batch_size = 32;
  o.epochs = 2;
  o.lr = 2e-3;
  o.warmup_epochs = 0.25;
  Recorder rec;
  auto t = Trainer::Create(o, nullptr, &rec);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_TRUE((*t)->Run().ok());
  ASSERT_EQ(rec.reports.size(), 80u);
  double first = 0, last = 0;
  for (int i = 0; i < 10; ++i) {
    first += rec.reports[i].stats.loss_mae;
    last += rec.reports[rec.reports.size() - 1 - i].stats.loss_mae;
  }
  EXPECT_LT(last, 0.8 * first) << "first 10 mean " << first / 10 << ", last 10 mean " << last / 10;
}

}  // namespace
}  // namespace clmae
