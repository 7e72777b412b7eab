#include "cli/image_view.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>

#include <ostream>

#include "image/store.hpp"

namespace ckpt::cli {
namespace {

std::string human(uint64_t bytes) {
  if (bytes < 10 * 1024) return fmt::format("{} B", bytes);
  if (bytes < 10 * 1024 * 1024) return fmt::format("{:.1f} KiB", bytes / 1024.0);
  return fmt::format("{:.1f} MiB", bytes / (1024.0 * 1024.0));
}

std::string prot_text(const schema::Vma& v) {
  return fmt::format("{}{}{}{}", (v.prot & PROT_READ) ? 'r' : '-',
                     (v.prot & PROT_WRITE) ? 'w' : '-', (v.prot & PROT_EXEC) ? 'x' : '-',
                     v.shared ? 's' : 'p');
}

std::string access_text(uint32_t flags) {
  switch (flags & O_ACCMODE) {
    case O_RDONLY:
      return "r";
    case O_WRONLY:
      return "w";
    default:
      return "rw";
  }
}

std::string mask_text(uint64_t mask) {
  if (mask == 0) return "none";
  std::string out;
  for (int sig = 1; sig <= 64; ++sig)
    if (mask & (uint64_t{1} << (sig - 1))) out += (out.empty() ? "" : ",") + std::to_string(sig);
  return out;
}

void print_threads(std::ostream& out, const schema::ProcessRecord& p) {
  for (auto& t : p.threads) {
    const auto& r = t.regs.r;
    out << fmt::format("    thread {} '{}': pc {:#x} sp {:#x}, blocked {}", t.tid, t.comm,
                       arch::pc(r), arch::sp(r), mask_text(t.sigmask));
    if (arch::syscall_nr(r) >= 0) out << fmt::format(", in system call {}", arch::syscall_nr(r));
    if (!t.pending.empty()) out << fmt::format(", {} signal(s) queued", t.pending.size());
    if (t.seccomp_mode) out << fmt::format(", seccomp mode {}", t.seccomp_mode);
    out << "\n";
  }
}

void print_memory(std::ostream& out, const schema::ProcessRecord& p) {
  uint64_t as_roots = 0;
  for (auto& v : p.memory.vmas)
    for (auto& r : v.from_root) as_roots += r.end - r.start;
  out << fmt::format(
      "  memory: {} mappings, {} saved{}\n", p.memory.vmas.size(), human(p.memory.page_bytes),
      as_roots ? fmt::format(" (and {} shared with the root, saved once)", human(as_roots)) : "");
  for (auto& v : p.memory.vmas) {
    uint64_t saved = 0;
    for (auto& r : v.pages) saved += r.end - r.start;
    std::string what = v.path.empty() ? "[" + v.kind + "]" : v.path;
    if (v.deleted) what += " (deleted)";
    if (v.shm) what += fmt::format(" (shared memory {})", *v.shm);
    out << fmt::format("    {:#014x}-{:#014x} {} {:>10} saved  {}\n", v.start, v.end, prot_text(v),
                       human(saved), what);
  }
}

void print_process(std::ostream& out, const schema::ImageRoot& image,
                   const schema::ProcessRecord& p) {
  if (p.zombie) {
    out << fmt::format("process {} '{}': a zombie, exit status {:#x}, parent {}\n", p.pid,
                       p.zombie->comm, p.zombie->exit_status, p.tree.ppid);
    return;
  }
  const auto& t = p.task;
  out << fmt::format("process {}: {} (parent {}, group {}, session {}), uid {}, cwd {}\n", p.pid,
                     t.exe, p.tree.ppid, p.tree.pgid, p.tree.sid, t.creds.uid[1], t.cwd);
  out << fmt::format("  threads: {}\n", p.threads.size());
  print_threads(out, p);
  print_memory(out, p);
  out << fmt::format("  descriptors: {}\n", p.fds.size());
  for (auto& f : p.fds) {
    const schema::OpenFile* of =
        f.open_file < image.open_files.size() ? &image.open_files[f.open_file] : nullptr;
    out << fmt::format("    {:>4} {} open file {}{}\n", f.fd, of ? access_text(of->flags) : "?",
                       f.open_file,
                       of ? fmt::format(" ({}) {}", of->kind, of->path) : " (not in the image)");
  }
  if (!p.signals.actions.empty()) {
    out << "  signal handlers:";
    for (auto& a : p.signals.actions) out << fmt::format(" {}@{:#x}", a.signo, a.handler);
    out << "\n";
  }
  if (!p.signals.pending.empty())
    out << fmt::format("  signals queued for the process: {}\n", p.signals.pending.size());
  static const char* kItimers[] = {"ITIMER_REAL", "ITIMER_VIRTUAL", "ITIMER_PROF"};
  for (size_t i = 0; i < 3; ++i)
    if (!p.timers.itimers[i].value.zero())
      out << fmt::format("  {}: {}.{:06}s left\n", kItimers[i], p.timers.itimers[i].value.sec,
                         p.timers.itimers[i].value.frac);
  for (auto& pt : p.timers.posix)
    out << fmt::format("  POSIX timer {} (clock {}): {}.{:09}s left, signal {}\n", pt.id, pt.clock,
                       pt.remaining.sec, pt.remaining.frac, pt.signo);
}

}  // namespace

Result<schema::ImageRoot> read_process_image(const image::GenerationInfo& gen) {
  CKPT_TRY_ASSIGN(auto reader, image::open_generation_section(gen, schema::kProcessSection));
  std::vector<std::byte> bytes;
  std::vector<std::byte> buf(1 << 16);
  for (;;) {
    CKPT_TRY_ASSIGN(size_t n, reader->read(buf));
    if (n == 0) break;
    bytes.insert(bytes.end(), buf.begin(), buf.begin() + static_cast<ptrdiff_t>(n));
  }
  auto image = schema::decode_image(bytes);
  if (!image.ok()) return image.error().wrap(fmt::format("generation {}", gen.id));
  return image;
}

void print_image(std::ostream& out, const schema::ImageRoot& image) {
  out << fmt::format("process image: format {}, ckpt {}, {}, root pid {}{}\n", image.format,
                     image.ckpt_version, image.arch, image.root_pid,
                     image.shell_job ? ", shell job" : "");
  for (auto& p : image.processes) print_process(out, image, p);
  if (!image.deleted_files.empty()) {
    out << "deleted files:\n";
    for (auto& d : image.deleted_files)
      out << fmt::format("  {} {} ({})\n", d.id, d.path, human(d.size));
  }
  if (!image.shm_objects.empty()) {
    out << "shared memory:\n";
    for (auto& o : image.shm_objects)
      out << fmt::format("  {} {} ({})\n", o.id, o.path, human(o.size));
  }
}

std::string image_json(const schema::ImageRoot& image, int indent) {
  return schema::to_display_json(schema::encode(image), indent);
}

std::vector<std::string> diff_images(const schema::ImageRoot& a, const schema::ImageRoot& b) {
  auto before = schema::Value::parse(image_json(a, -1));
  auto after = schema::Value::parse(image_json(b, -1));
  std::vector<std::string> out;
  for (auto& op : schema::Value::diff(before, after)) {
    std::string path = op.value("path", "");
    std::string kind = op.value("op", "");
    if (kind == "remove") {
      out.push_back(fmt::format("- {}", path));
    } else if (kind == "add") {
      out.push_back(fmt::format("+ {}: {}", path, op["value"].dump()));
    } else {
      schema::Value::json_pointer ptr(path);
      out.push_back(fmt::format("~ {}: {} -> {}", path, before.at(ptr).dump(), op["value"].dump()));
    }
  }
  return out;
}

}  // namespace ckpt::cli
