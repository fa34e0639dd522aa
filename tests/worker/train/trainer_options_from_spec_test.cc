#include "worker/train/trainer_options_from_spec.h"

#include <gtest/gtest.h>

#include "common/job_spec/job_spec_yaml.h"

namespace clmae {
namespace {

absl::StatusOr<TrainerOptions> FromYaml(const std::string& yaml) {
  auto spec = JobSpecFromYaml(yaml);
  if (!spec.ok()) return spec.status();
  return TrainerOptionsFromSpec(*spec);
}

TEST(TrainerOptionsFromSpecTest, DefaultsAreTheReferences) {
  auto o = FromYaml("name: d\n");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->model.embed_dim, 192);  // tiny
  EXPECT_FALSE(o->plain_mae);
  EXPECT_DOUBLE_EQ(o->step.mask_ratio, 0.75);
  EXPECT_DOUBLE_EQ(o->step.weights.lambda_gauss, 1.0);
  EXPECT_DOUBLE_EQ(o->step.weights.lambda_kl, 0.1);
  EXPECT_DOUBLE_EQ(o->step.weights.lambda_div, 2.0);
  EXPECT_EQ(o->curriculum.shape, CurriculumOptions::Shape::kPerEpochLinear);
  EXPECT_DOUBLE_EQ(o->blr, 1e-3);
  EXPECT_FALSE(o->lr.has_value());
  EXPECT_DOUBLE_EQ(o->warmup_epochs, 40);
  EXPECT_DOUBLE_EQ(o->optim.beta2, 0.95);
  EXPECT_TRUE(o->optim.decay_tokens);
  EXPECT_EQ(o->epochs, 200);
  EXPECT_EQ(o->loader.batch_size, 64);
  EXPECT_EQ(o->device, "cpu");
  EXPECT_EQ(o->data.kind, DatasetOptions::Kind::kIdx);
  EXPECT_EQ(o->data.path, "/usr/share/datasets/fashion-mnist");
  EXPECT_EQ(o->transform.mean, std::vector<double>{0.2860});
  EXPECT_EQ(o->output_dir, "runs/d");
  EXPECT_NE(o->spec_text.find("name: d"), std::string::npos);
}

TEST(TrainerOptionsFromSpecTest, EveryFieldIsMapped) {
  auto o = FromYaml(R"(
name: full
model: {preset: small, depth: 2, norm_pix_loss: true}
masking: {mode: PLAIN_MAE, mask_ratio: 0.6, lambda_div: 0}
curriculum: {shape: COSINE, start: 0.5, end: -0.5}
optimizer: {lr: 0.01, min_lr: 0.001, warmup_epochs: 1, weight_decay: 0.1, beta1: 0.8,
            beta2: 0.9, clip_grad: 3, accum_iter: 2, decay_tokens: false}
data: {kind: SYNTHETIC, synthetic_size: 100, transform: EVAL, num_workers: 0, prefetch: 2,
       limit: 50, mean: [0.1, 0.2, 0.3], std: [0.5, 0.5, 0.5]}
train: {epochs: 3, batch_size: 8, max_steps: 5, seed: 9, threads: 1, log_every: 2,
       cuda_graphs: true}
eval: {enabled: true, knn_k: 3, probe_epochs: 0, train_limit: 40, test_limit: 20,
       every_epochs: 2, periodic_train_limit: 30, periodic_test_limit: 25}
output: {dir: /tmp/x, checkpoint_every: 4, keep_checkpoints: 1, preview_every: 2,
         preview_images: 2, export_safetensors: true}
)");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->model.embed_dim, 384);
  EXPECT_EQ(o->model.depth, 2);
  EXPECT_TRUE(o->model.norm_pix_loss);
  EXPECT_TRUE(o->plain_mae);
  EXPECT_DOUBLE_EQ(o->step.mask_ratio, 0.6);
  EXPECT_DOUBLE_EQ(o->step.weights.lambda_div, 0);
  EXPECT_EQ(o->curriculum.shape, CurriculumOptions::Shape::kCosine);
  EXPECT_DOUBLE_EQ(o->curriculum.end, -0.5);
  EXPECT_DOUBLE_EQ(*o->lr, 0.01);
  EXPECT_DOUBLE_EQ(o->min_lr, 0.001);
  EXPECT_DOUBLE_EQ(o->optim.weight_decay, 0.1);
  EXPECT_DOUBLE_EQ(o->optim.beta1, 0.8);
  EXPECT_DOUBLE_EQ(o->step.clip_grad, 3);
  EXPECT_EQ(o->step.accum_iter, 2);
  EXPECT_FALSE(o->optim.decay_tokens);
  EXPECT_EQ(o->data.kind, DatasetOptions::Kind::kSynthetic);
  EXPECT_EQ(o->data.synthetic_size, 100);
  EXPECT_EQ(o->data.channels, 3);
  EXPECT_EQ(o->transform.kind, TransformOptions::Kind::kEval);
  EXPECT_EQ(o->loader.num_workers, 0);
  EXPECT_EQ(o->data_limit, 50);
  EXPECT_EQ(o->transform.std, (std::vector<double>{0.5, 0.5, 0.5}));
  EXPECT_EQ(o->epochs, 3);
  EXPECT_EQ(o->max_steps, 5);
  EXPECT_TRUE(o->step.cuda_graphs);
  EXPECT_EQ(o->step.seed, 9u);
  EXPECT_EQ(o->log_every, 2);
  EXPECT_TRUE(o->eval_enabled);
  EXPECT_EQ(o->eval.knn_k, 3);
  EXPECT_EQ(o->eval_test.kind, DatasetOptions::Kind::kSynthetic);
  EXPECT_EQ(o->eval_every_epochs, 2);
  EXPECT_EQ(o->eval_periodic.knn_k, 3);
  EXPECT_EQ(o->eval_periodic.train_limit, 30);
  EXPECT_EQ(o->eval_periodic.test_limit, 20);  // no more than the final evaluation's
  EXPECT_EQ(o->output_dir, "/tmp/x");
  EXPECT_EQ(o->keep_checkpoints, 1);
  EXPECT_EQ(o->preview_images, 2);
  EXPECT_TRUE(o->export_safetensors);
}

TEST(TrainerOptionsFromSpecTest, GpuDecodingAsksForACudaDecodeDevice) {
  auto host = FromYaml("name: h\n");
  ASSERT_TRUE(host.ok()) << host.status();
  EXPECT_TRUE(host->loader.decode_device.is_cpu());
  auto gpu = FromYaml(R"(
name: g
model: {in_chans: 3}
data: {kind: IMAGE_FOLDER, path: /data/train, decode: GPU}
train: {device: "cuda:1", precision: BF16}
)");
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  // The trainer puts the rank's own device (cuda:1 here) in its place.
  EXPECT_TRUE(gpu->loader.decode_device.is_cuda());
}

TEST(TrainerOptionsFromSpecTest, EvaluationDuringTrainingDefaults) {
  auto o = FromYaml("name: q\ndata: {kind: SYNTHETIC}\neval: {enabled: true}\n");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->eval_every_epochs, 2);
  EXPECT_EQ(o->eval_periodic.train_limit, 1000);
  EXPECT_EQ(o->eval_periodic.test_limit, 250);
  EXPECT_EQ(o->eval_periodic.probe_epochs, 0);
}

TEST(TrainerOptionsFromSpecTest, InvalidSpecIsRejectedNamingTheField) {
  auto o = FromYaml("name: bad\nmasking: {mask_ratio: 1.5}\n");
  ASSERT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(o.status().message().find("masking.mask_ratio"), std::string::npos) << o.status();
}

}  // namespace
}  // namespace clmae
