// Helpers shared by the C++ hosts of Verilated designs (driver.cpp: the GEMM Accelerator;
// device.cpp: the device top): Verilator's $fatal/$stop/$finish as C++ exceptions, bit fields
// in little-endian 32-bit word arrays, copies between those arrays and Verilated ports of any
// width, and the seeded stall generator. Each build has one translation unit that includes it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "verilated.h"

// -- Verilator's fatal/stop/finish become C++ exceptions, caught in bs_run ----------------
namespace {
struct VerilogStop : std::runtime_error {
    using std::runtime_error::runtime_error;
};
std::string where(const char* file, int line, const char* msg) {
    return std::string(msg ? msg : "") + " at " + (file ? file : "?") + ":" + std::to_string(line);
}
}  // namespace

void vl_finish(const char* file, int line, const char* hier) {
    (void)hier;
    throw VerilogStop(where(file, line, "Verilog $finish"));
}
void vl_stop(const char* file, int line, const char* hier) {
    (void)hier;
    throw VerilogStop(where(file, line, "Verilog $stop"));
}
void vl_fatal(const char* file, int line, const char* hier, const char* msg) {
    (void)hier;
    throw VerilogStop(where(file, line, msg));
}

// -- packing helpers: fields at bit offsets of a little-endian 32-bit word array -----------
namespace {
constexpr int kMaxWords = 64;  // payloads up to 2048 bits

inline void put_field(uint32_t* w, int off, int width, uint64_t v) {
    if (width < 64) v &= (uint64_t(1) << width) - 1;
    while (width > 0) {
        const int idx = off >> 5, sh = off & 31;
        const int take = std::min(width, 32 - sh);
        const uint32_t mask = take == 32 ? 0xffffffffu : ((1u << take) - 1u) << sh;
        w[idx] = (w[idx] & ~mask) | ((uint32_t(v) << sh) & mask);
        v >>= take;
        off += take;
        width -= take;
    }
}

inline uint64_t get_field(const uint32_t* w, int off, int width) {
    uint64_t v = 0;
    int got = 0;
    while (got < width) {
        const int idx = off >> 5, sh = off & 31;
        const int take = std::min(width - got, 32 - sh);
        const uint64_t part = (w[idx] >> sh) & (take == 32 ? 0xffffffffu : ((1u << take) - 1u));
        v |= part << got;
        got += take;
        off += take;
    }
    return v;
}

inline int64_t sign_extend(uint64_t v, int width) {
    const uint64_t sign = uint64_t(1) << (width - 1);
    return int64_t((v ^ sign) - sign);
}

// Ports are CData/SData/IData/QData or VlWide<N>: copy to and from a word array.
template <typename T>
inline void store(T& port, const uint32_t* w) {
    if (sizeof(T) > 4) {
        port = T(uint64_t(w[0]) | (uint64_t(w[1]) << 32));
    } else {
        port = T(w[0]);
    }
}
template <std::size_t N>
inline void store(VlWide<N>& port, const uint32_t* w) {
    for (std::size_t i = 0; i < N; ++i) port[i] = w[i];
}
template <typename T>
inline void load(const T& port, uint32_t* w) {
    const uint64_t v = uint64_t(port);
    w[0] = uint32_t(v);
    w[1] = uint32_t(v >> 32);
}
template <std::size_t N>
inline void load(const VlWide<N>& port, uint32_t* w) {
    for (std::size_t i = 0; i < N; ++i) w[i] = port[i];
}

// xorshift64*: stall patterns of the tests, reproducible from a seed.
struct Rng {
    uint64_t s;
    double next() {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        return double((s * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
    }
};
}  // namespace
