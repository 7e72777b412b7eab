// `ckpt show` and `ckpt verify`: looking at a store or a single generation.
#include <sys/stat.h>

#include <ctime>
#include <iostream>
#include <optional>

#include <nlohmann/json.hpp>

#include "cli/command.hpp"
#include "cli/image_view.hpp"
#include "cli/options.hpp"
#include "image/store.hpp"

namespace ckpt::cli {
namespace {

namespace fs = std::filesystem;
using image::GenerationInfo;
using nlohmann::json;

std::string local_time(int64_t unix_ns) {
  time_t secs = static_cast<time_t>(unix_ns / 1000000000);
  tm t{};
  localtime_r(&secs, &t);
  char buf[64];
  strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &t);
  return buf;
}

std::string human_size(uint64_t bytes) {
  static constexpr const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.1f} {}", v, units[u]);
}

// One row of `show` for a store: a generation, or one whose manifest could not be read.
struct Row {
  std::string id;
  const GenerationInfo* gen = nullptr;
  std::string status;   // "ok", "corrupt" or "unverified"
  std::string problem;  // the reason when corrupt
};

json gen_summary_json(const Row& r) {
  json j{{"id", r.id}, {"status", r.status}};
  if (!r.problem.empty()) j["problem"] = r.problem;
  if (r.gen) {
    j["path"] = r.gen->path.string();
    j["created_unix_ns"] = r.gen->created_unix_ns;
    j["created"] = local_time(r.gen->created_unix_ns);
    j["total_bytes"] = r.gen->total_bytes;
    j["sections"] = r.gen->sections.size();
    j["labels"] = r.gen->labels;
  }
  return j;
}

std::string row_line(const Row& r) {
  std::string state = r.status == "corrupt" ? "CORRUPT: " + r.problem : r.status;
  if (!r.gen) return fmt::format("{}  {:19}  {:>10}  {:>12}  {}", r.id, "?", "?", "?", state);
  return fmt::format("{}  {}  {:>10}  {:>3} sections  {}", r.id, local_time(r.gen->created_unix_ns),
                     human_size(r.gen->total_bytes), r.gen->sections.size(), state);
}

int show_store(const image::Store& store, bool verify, bool as_json) {
  std::vector<image::Problem> problems;
  auto gens = store.list(&problems);
  std::vector<Row> rows;
  for (auto& g : gens) {
    Row r{g.id, &g, verify ? "ok" : "unverified", {}};
    if (verify) {
      if (Status st = store.verify(g); !st.ok()) {
        r.status = "corrupt";
        r.problem = st.error().message;
      }
    }
    rows.push_back(std::move(r));
  }
  for (auto& p : problems) rows.push_back({p.id, nullptr, "corrupt", p.message});
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.id > b.id; });
  if (as_json) {
    json arr = json::array();
    for (auto& r : rows) arr.push_back(gen_summary_json(r));
    json j{{"store", store.dir().string()}, {"verified", verify}, {"generations", arr}};
    std::cout << j.dump(2) << "\n";
    return kExitOk;
  }
  if (rows.empty()) std::cout << store.dir().string() << ": no generations\n";
  for (auto& r : rows) std::cout << row_line(r) << "\n";
  return kExitOk;
}

json section_json(const image::SectionMeta& s) {
  return json{{"name", s.name},
              {"file", s.file},
              {"offset", s.offset},
              {"stored_size", s.stored_size},
              {"raw_size", s.raw_size},
              {"compression", s.compression == image::Compression::zstd ? "zstd" : "none"},
              {"checksum", fmt::format("{:016x}", s.checksum)}};
}

// A generation given directly: its directory, files and the directories above it must pass
// `trust` as a store's would.
Result<GenerationInfo> read_given_generation(const fs::path& dir, image::Trust trust) {
  CKPT_TRY(image::check_trusted_path(dir, trust));
  return image::read_generation(dir, trust);
}

int show_generation(const fs::path& dir, bool verify, bool as_json, image::Trust trust) {
  auto gen = read_given_generation(dir, trust);
  if (!gen.ok()) {
    print_error(gen.error().message);
    return kExitFailed;
  }
  Row r{gen->id, &*gen, verify ? "ok" : "unverified", {}};
  if (verify) {
    if (Status st = image::verify_generation(*gen); !st.ok()) {
      r.status = "corrupt";
      r.problem = st.error().message;
    }
  }
  std::optional<Result<schema::ImageRoot>> image;
  if (gen->find_section(schema::kProcessSection)) image = read_process_image(*gen);
  if (as_json) {
    json j = gen_summary_json(r);
    j["format_version"] = gen->format_version;
    j["writer_version"] = gen->writer_version;
    json secs = json::array();
    for (auto& s : gen->sections) secs.push_back(section_json(s));
    j["sections"] = secs;
    if (image && image->ok()) j["image"] = json::parse(image_json(**image, -1));
    if (image && !image->ok()) j["image_error"] = image->error().message;
    std::cout << j.dump(2) << "\n";
    return kExitOk;
  }
  std::cout << row_line(r) << "\n";
  std::cout << fmt::format("  format {}, written by ckpt {}\n", gen->format_version,
                           gen->writer_version);
  for (auto& [k, v] : gen->labels) std::cout << fmt::format("  label {}={}\n", k, v);
  for (auto& s : gen->sections)
    std::cout << fmt::format("  section {:<20} {} @{:<10} stored {:>10} raw {:>10} {:<4} {:016x}\n",
                             s.name, s.file, s.offset, s.stored_size, s.raw_size,
                             s.compression == image::Compression::zstd ? "zstd" : "none",
                             s.checksum);
  if (image && image->ok()) print_image(std::cout, **image);
  if (image && !image->ok()) {
    print_error(image->error().message);
    return kExitFailed;
  }
  return kExitOk;
}

Result<schema::ImageRoot> image_of(const fs::path& dir) {
  auto gen = image::read_generation(dir);
  if (!gen.ok()) return gen.error();
  return read_process_image(*gen);
}

int run_diff(const std::string& a, const std::string& b) {
  auto first = image_of(a);
  auto second = first.ok() ? image_of(b) : Result<schema::ImageRoot>(first.error());
  if (!second.ok()) {
    print_error(second.error().message);
    return kExitFailed;
  }
  auto lines = diff_images(*first, *second);
  for (auto& l : lines) std::cout << l << "\n";
  if (lines.empty()) std::cout << "the process images are the same\n";
  return kExitOk;
}

bool is_generation_dir(const fs::path& dir) {
  struct stat st;
  return !image::is_store(dir) && ::stat((dir / "manifest").c_str(), &st) == 0;
}

int run_show(const std::string& dir, bool no_verify, bool as_json, image::Trust trust) {
  if (is_generation_dir(dir)) return show_generation(dir, !no_verify, as_json, trust);
  auto store = image::Store::open(dir, {.trust = trust});
  if (!store.ok()) {
    print_error(store.error().message);
    return kExitFailed;
  }
  return show_store(*store, !no_verify, as_json);
}

int run_verify(const std::string& dir, image::Trust trust) {
  if (is_generation_dir(dir)) {
    auto gen = read_given_generation(dir, trust);
    Status st = gen.ok() ? image::verify_generation(*gen) : Status(gen.error());
    if (!st.ok()) {
      print_error(st.error().message);
      return kExitFailed;
    }
    std::cout << "gen " << gen->id << ": ok\n";
    return kExitOk;
  }
  auto store = image::Store::open(dir, {.trust = trust});
  if (!store.ok()) {
    print_error(store.error().message);
    return kExitFailed;
  }
  std::vector<image::Problem> problems;
  auto gens = store->list(&problems);
  bool bad = !problems.empty();
  for (auto& p : problems) print_error(fmt::format("gen {}: {}", p.id, p.message));
  for (auto& g : gens) {
    if (Status st = store->verify(g); !st.ok()) {
      print_error(st.error().message);
      bad = true;
    } else {
      std::cout << "gen " << g.id << ": ok\n";
    }
  }
  if (gens.empty() && problems.empty()) std::cout << store->dir().string() << ": no generations\n";
  return bad ? kExitFailed : kExitOk;
}

const CommandRegistrar show_cmd{
    {50, [](CLI::App& app, int* exit_code) {
       auto* cmd = app.add_subcommand("show", "Summarise a store or one generation");
       cmd->footer(
           "DIR is a store (one line per generation, newest first: id, local time, size, "
           "sections,\n"
           "status) or a generation directory (its labels, sections and process image: "
           "processes,\n"
           "threads, mappings, descriptors, signals, timers). Every checksum is "
           "verified\n"
           "unless --no-verify is given, in which case the status reads 'unverified'. Corrupt\n"
           "generations are listed as 'CORRUPT: reason'; use 'ckpt verify' for an exit status.");
       auto dir = std::make_shared<std::string>();
       auto json_out = std::make_shared<bool>(false);
       auto no_verify = std::make_shared<bool>(false);
       auto trust = std::make_shared<bool>(false);
       auto diff = std::make_shared<std::string>();
       cmd->add_option("DIR", *dir, "Store or generation directory")
           ->required()
           ->check(non_empty());
       cmd->add_flag("--json", *json_out, "Print JSON for machines");
       cmd->add_flag("--no-verify", *no_verify, "Do not read the data to check checksums");
       cmd->add_flag("--trust-store", *trust, "Read a store that another user owns or can write");
       cmd->add_option("--diff", *diff,
                       "Another generation directory: print how its process image differs from "
                       "DIR's")
           ->check(non_empty());
       cmd->callback([=] {
         *exit_code = diff->empty()
                          ? run_show(*dir, *no_verify, *json_out, image::Trust{.any_owner = *trust})
                          : run_diff(*dir, *diff);
       });
     }}};

const CommandRegistrar verify_cmd{
    {51, [](CLI::App& app, int* exit_code) {
       auto* cmd = app.add_subcommand("verify", "Check every checksum of a store or generation");
       cmd->footer(
           "Prints 'gen ID: ok' per good generation and one error line per bad one, naming the "
           "first\n"
           "bad section, its file and offset. Exit status 1 if anything is bad.");
       auto dir = std::make_shared<std::string>();
       auto trust = std::make_shared<bool>(false);
       cmd->add_option("DIR", *dir, "Store or generation directory")
           ->required()
           ->check(non_empty());
       cmd->add_flag("--trust-store", *trust, "Read a store that another user owns or can write");
       cmd->callback([=] { *exit_code = run_verify(*dir, image::Trust{.any_owner = *trust}); });
     }}};

}  // namespace
}  // namespace ckpt::cli
