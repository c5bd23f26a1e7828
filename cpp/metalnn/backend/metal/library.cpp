#include "metalnn/backend/metal/library.h"

#include <map>
#include <mutex>
#include <set>
#include <sstream>

#include "metalnn/backend/metal/device.h"
#include "metalnn/backend/metal/embedded_msl.h"
#include "metalnn/core/error.h"

namespace metalnn::metal {

namespace {

const char* find_embedded(const std::string& name) {
  for (size_t i = 0; i < kEmbeddedMslCount; ++i)
    if (name == kEmbeddedMsl[i].name) return kEmbeddedMsl[i].text;
  return nullptr;
}

// `#include "name"` -> name; anything else (system includes, other lines) -> "".
std::string quoted_include(const std::string& line) {
  size_t i = line.find_first_not_of(" \t");
  if (i == std::string::npos || line.compare(i, 8, "#include") != 0) return "";
  size_t open = line.find('"', i + 8);
  if (open == std::string::npos) return "";
  size_t close = line.find('"', open + 1);
  if (close == std::string::npos) return "";
  return line.substr(open + 1, close - open - 1);
}

void expand(const std::string& name, std::set<std::string>& seen, std::ostringstream& out) {
  const char* text = find_embedded(name);
  if (!text) fail(ErrorKind::Runtime, "metal", "MSL source '", name, "' is not embedded in this build");
  if (!seen.insert(name).second) return;  // each header once, as #pragma once would
  std::istringstream in(text);
  std::string line;
  out << "#line 1 \"" << name << "\"\n";
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    std::string inc = quoted_include(line);
    if (inc.empty()) {
      out << line << '\n';
      continue;
    }
    expand(inc, seen, out);
    out << "#line " << number + 1 << " \"" << name << "\"\n";
  }
}

}  // namespace

std::string expanded_source(const std::string& file) {
  std::set<std::string> seen;
  std::ostringstream out;
  expand(file, seen, out);
  return out.str();
}

std::string file_defining(const std::string& kernel) {
  const std::string marker = "kernel void " + kernel + "(";
  for (size_t i = 0; i < kEmbeddedMslCount; ++i) {
    std::string name = kEmbeddedMsl[i].name;
    if (name.size() > 6 && name.compare(name.size() - 6, 6, ".metal") == 0 &&
        std::string(kEmbeddedMsl[i].text).find(marker) != std::string::npos)
      return name;
  }
  return "";
}

MTL::Library* library(const std::string& file, const char* op) {
  static std::mutex mutex;
  static std::map<std::string, MTL::Library*> cache;  // kept for the process's life
  std::lock_guard<std::mutex> lock(mutex);
  if (auto it = cache.find(file); it != cache.end()) return it->second;

  MTL::Device* d = require_device(op);
  std::string source = expanded_source(file);
  NS::AutoreleasePool* pool = NS::AutoreleasePool::alloc()->init();
  MTL::CompileOptions* options = MTL::CompileOptions::alloc()->init();
  // MSL 3.0 (macOS 13+); fast math off so results match the CPU backend.
  options->setLanguageVersion(MTL::LanguageVersion3_0);
  options->setFastMathEnabled(false);
  NS::Error* error = nullptr;
  MTL::Library* lib = d->newLibrary(ns_string(source), options, &error);
  options->release();
  std::string message = lib ? "" : describe(error);
  pool->release();
  if (!lib) fail(ErrorKind::Runtime, op, "compiling ", file, " failed: ", message);
  cache[file] = lib;
  return lib;
}

}  // namespace metalnn::metal
