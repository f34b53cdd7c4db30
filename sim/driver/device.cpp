// C++ host of the Verilated device top (barista_hw/device/rtl/device.py): whole training
// iterations with no Python in the loop. Built by sim/device_verilator.py into an executable:
//
//     device_sim <input file> <output file>
//     device_sim --serve
//
// The second form keeps one device and its DRAM alive and answers commands on stdin/stdout
// (the serve mode at the end of this file: a host training with the device).
// The input holds the `prog` beats (register writes: the decoder's, and each iteration's
// start of its records' fetch from the program image in DRAM; in the order the host sends
// them), the DRAM image (bus words, the program image among them), the HOST_IN words
// (each batch with the count of host_out words the host must have received first: it answers
// what it was sent), the memory model's timing and the stall settings; the output holds the
// status, the cycle count, the device's counters, the final DRAM image, the host-bound words,
// the SCALE records, at each SCALE (an iteration's end) the count of host-bound words, the
// cycle counter and the DRAM image, and the memory's statistics (file layouts:
// sim/device_verilator.py).
//
// Beats, host words and SCALE records are opaque bit vectors here: their widths come from
// device_layout.h, which sim/device_verilator.py generates from the Device's signature, so
// nothing in this file depends on the write or record layouts. Only the memory port's
// `cmd` fields (addr, length, write: barista_hw/device/rtl/port.py) are read.
//
// The host (as sim/device_test.py's cocotb bench): beats on `prog` in order, the HOST_IN
// words once the host_out words before them have arrived, `host_out` and `scale` sinks; each
// source idles before an offer and each sink drops `ready` with probability `host_stall`.
// The memory: DramModel below. The run ends once the sequencer has started, is no longer
// running and every beat was taken; memory commands still outstanding then are an error.

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "device_layout.h"  // BD_TOP_HEADER, BD_TOP_CLASS, port names, widths, counters
#include BD_TOP_HEADER
#include "verilated.h"
#include "verilated_io.h"  // VerilogStop, vl_* handlers, fields, store/load, Rng

namespace {
constexpr int64_t kMagic = 0x3156454442;  // "BDEV1"
constexpr int kHeader = 16;               // int64 fields before the arrays, both files
constexpr int kWords(int bits) { return (bits + 31) / 32 < 2 ? 2 : (bits + 31) / 32; }

enum Status : int64_t {
    BD_OK = 0,
    BD_TIMEOUT = 1,         // max_cycles edges without the end of the iteration
    BD_BAD_INPUT = 2,       // the input file does not match this build
    BD_PROTOCOL = 3,        // the device broke a stream rule or addressed outside DRAM
    BD_NOT_IDLE = 4,        // memory commands outstanding at the end
    BD_VERILOG_STOP = 5,    // $fatal / $stop / $finish / a Verilator fatal
    BD_EXCEPTION = 6,       // any other C++ exception
};

struct Failure : std::runtime_error {
    int64_t code;
    Failure(int64_t c, const std::string& m) : std::runtime_error(m), code(c) {}
};

// -- the memory behind the port --------------------------------------------------------------
// Word-addressed, commands performed in order (sim/port_model.py's PortMemory, whose protocol
// checks it repeats): a read's first word is offered `latency` cycles after its command was
// taken; data beats (both directions: one bus) draw from a token bucket that fills by
// rate_num / rate_den words a cycle and holds `burst` words, so up to `burst` words move back
// to back and `rate` words a cycle on average (rate 1: one a cycle, as PortMemory). Each
// stream the memory drives stalls with probability `stall` (cmd.ready, w.ready low; r.valid
// withheld before an offer); an offered read beat stays until taken.
struct DramModel {
    struct Cmd {
        uint64_t addr;
        uint32_t length, done;
        bool write;
        int64_t ready_at;
    };
    std::vector<uint64_t> words;
    int64_t latency = 1, rate_num = 1, rate_den = 1, tokens = 0, cap = 1;
    double stall = 0;
    Rng rng{1};
    std::deque<Cmd> queue;
    bool cmd_ready = false, w_ready = false, r_valid = false, r_taken = false;
    uint64_t r_payload = 0;
    bool cmd_held = false, w_held = false;
    uint64_t cmd_last = 0, w_last = 0;
    int64_t commands = 0, read_words = 0, write_words = 0, stalls = 0;

    bool go() {
        if (stall > 0 && rng.next() < stall) {
            ++stalls;
            return false;
        }
        return true;
    }

    // After an edge, at `cycle` (1 for the first cycle).
    void drive(int64_t cycle) {
        tokens = std::min(cap, tokens + rate_num);
        const bool have = tokens >= rate_den;
        cmd_ready = go();
        Cmd* head = queue.empty() ? nullptr : &queue.front();
        w_ready = head && head->write && have && go();
        const bool held = r_valid && !r_taken;
        r_taken = false;
        if (held) return;
        const bool read = head && !head->write && cycle >= head->ready_at;
        r_valid = read && have && go();
        if (r_valid) r_payload = words[head->addr + head->done];
    }

    void check_held(bool& held, uint64_t& last, const char* stream, bool valid, uint64_t payload,
                    bool took, int64_t cycle) {
        if (held && (!valid || payload != last)) {
            throw Failure(BD_PROTOCOL, std::string(stream) + " beat withdrawn or changed at cycle " +
                                           std::to_string(cycle) + " before it was taken");
        }
        held = valid && !took;
        last = payload;
    }

    // Before the edge: the transfers that happen at it (the head's beat before a new command).
    void sample(int64_t cycle, bool c_valid, uint64_t c_payload, bool w_valid, uint64_t w_payload,
                bool r_ready) {
        const bool took = c_valid && cmd_ready;
        check_held(cmd_held, cmd_last, "port.cmd", c_valid, c_valid ? c_payload : 0, took, cycle);
        Cmd* head = queue.empty() ? nullptr : &queue.front();
        if (head && head->write) {
            const bool w_took = w_valid && w_ready;
            check_held(w_held, w_last, "port.w", w_valid, w_valid ? w_payload : 0, w_took, cycle);
            if (w_took) {
                words[head->addr + head->done] = w_payload & kBusMask;
                ++write_words;
                ++head->done;
                tokens -= rate_den;
            }
        } else if (head && r_valid && r_ready) {
            ++read_words;
            ++head->done;
            r_taken = true;
            tokens -= rate_den;
        }
        if (head && head->done == head->length) queue.pop_front();
        if (took) {
            const uint64_t addr = get_bits(c_payload, BD_CMD_ADDR_OFF, BD_CMD_ADDR_W);
            const uint32_t length = uint32_t(get_bits(c_payload, BD_CMD_LENGTH_OFF, BD_CMD_LENGTH_W));
            const bool write = get_bits(c_payload, BD_CMD_WRITE_OFF, 1);
            if (length == 0) {
                throw Failure(BD_PROTOCOL, "a memory command of length 0 at cycle " +
                                               std::to_string(cycle));
            }
            if (addr + length > words.size()) {
                throw Failure(BD_PROTOCOL, "memory command [" + std::to_string(addr) + ", " +
                                               std::to_string(addr + length) + ") at cycle " +
                                               std::to_string(cycle) + " is outside the " +
                                               std::to_string(words.size()) + "-word DRAM");
            }
            queue.push_back({addr, length, 0, write, cycle + latency});
            ++commands;
        }
    }

    static constexpr uint64_t kBusMask =
        BD_BUS_W >= 64 ? ~uint64_t(0) : (uint64_t(1) << BD_BUS_W) - 1;
    static uint64_t get_bits(uint64_t v, int off, int width) {
        return (v >> off) & (width >= 64 ? ~uint64_t(0) : (uint64_t(1) << width) - 1);
    }
};

// -- files --------------------------------------------------------------------------------
struct Input {
    int64_t h[kHeader];
    double host_stall, mem_stall;
    std::vector<uint32_t> prog;  // n_beats x beat words
    std::vector<uint64_t> memory;
    std::vector<int64_t> segments;  // (host_out words first, word count) per HOST_IN batch
    std::vector<uint64_t> host_in;
};

template <typename T>
void read_array(std::ifstream& f, std::vector<T>& v, int64_t n, const char* what) {
    if (n < 0) throw Failure(BD_BAD_INPUT, std::string("negative size of ") + what);
    v.resize(size_t(n));
    f.read(reinterpret_cast<char*>(v.data()), std::streamsize(n * sizeof(T)));
    if (!f) throw Failure(BD_BAD_INPUT, std::string("input file ends inside ") + what);
}

Input read_input(const char* path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw Failure(BD_BAD_INPUT, std::string("cannot open ") + path);
    Input in;
    f.read(reinterpret_cast<char*>(in.h), sizeof(in.h));
    f.read(reinterpret_cast<char*>(&in.host_stall), sizeof(double));
    f.read(reinterpret_cast<char*>(&in.mem_stall), sizeof(double));
    if (!f || in.h[0] != kMagic) throw Failure(BD_BAD_INPUT, std::string(path) + ": not an input");
    if (in.h[1] != kWords(BD_PROG_W)) {
        throw Failure(BD_BAD_INPUT, "prog beats of " + std::to_string(in.h[1]) +
                                        " words; this build's prog payload takes " +
                                        std::to_string(kWords(BD_PROG_W)));
    }
    read_array(f, in.prog, in.h[2] * in.h[1], "the prog beats");
    read_array(f, in.memory, in.h[3], "the DRAM image");
    read_array(f, in.segments, 2 * in.h[4], "the HOST_IN batches");
    read_array(f, in.host_in, in.h[5], "the HOST_IN words");
    int64_t total = 0;
    for (int64_t s = 0; s < in.h[4]; ++s) total += in.segments[2 * s + 1];
    if (total != in.h[5]) throw Failure(BD_BAD_INPUT, "HOST_IN batches and words disagree");
    if (in.h[6] < 1 || in.h[7] < 1 || in.h[8] < 1 || in.h[9] < 1) {
        throw Failure(BD_BAD_INPUT, "latency, rate and burst must be >= 1");
    }
    return in;
}

struct Output {
    int64_t h[kHeader] = {0};
    std::vector<int64_t> counters;
    std::vector<uint64_t> host_out;
    std::vector<uint32_t> scales;  // SCALE records, kWords(BD_SCALE_W) words each
    std::vector<int64_t> at_scale;  // (host_out words, cycles counter) at each SCALE
    std::vector<uint64_t> snapshots;  // the DRAM image at each SCALE
    std::string message;
};

void write_output(const char* path, const Output& out, const std::vector<uint64_t>& memory) {
    std::ofstream f(path, std::ios::binary);
    auto put = [&f](const void* p, size_t n) { f.write(static_cast<const char*>(p), n); };
    put(out.h, sizeof(out.h));
    put(out.counters.data(), out.counters.size() * sizeof(int64_t));
    put(memory.data(), memory.size() * sizeof(uint64_t));
    put(out.host_out.data(), out.host_out.size() * sizeof(uint64_t));
    put(out.scales.data(), out.scales.size() * sizeof(uint32_t));
    put(out.at_scale.data(), out.at_scale.size() * sizeof(int64_t));
    put(out.snapshots.data(), out.snapshots.size() * sizeof(uint64_t));
    put(out.message.data(), out.message.size());
}

// -- the host's side of the streams -------------------------------------------------------
// One clock cycle a call of step(): drive the host's streams and the memory after the last
// edge, sample the transfers, then the edge. The file mode queues everything first; the
// serve mode appends beats and HOST_IN words between runs (their state persists).
struct Host {
    DramModel& mem;
    BD_TOP_CLASS* top;
    double stall = 0;
    std::vector<uint32_t> prog;  // prog beats (register writes), kWords(BD_PROG_W) words each
    std::vector<int64_t> segments;  // (host_out words first, word count) per HOST_IN batch
    std::vector<uint64_t> host_in;
    std::vector<uint64_t> host_out;
    std::vector<uint32_t> scales;     // SCALE records, kWords(BD_SCALE_W) words each
    std::vector<uint64_t> readback;   // exponent-entry words read back
    std::vector<int64_t> at_scale;    // (host_out words, cycles counter) at each SCALE
    std::vector<uint64_t> snapshots;  // the DRAM image at each SCALE (file mode)
    bool snapshot_at_scale = false;
    int64_t edge = 0, taken = 0, seg = 0, pos = 0, host_in_taken = 0;
    bool prog_off = false, in_off = false, started = false, running = false;
    Rng rng_prog{1}, rng_in{1}, rng_out{1}, rng_scale{1};

    Host(DramModel& m, BD_TOP_CLASS* t, uint64_t seed, double host_stall)
        : mem(m), top(t), stall(host_stall) {
        rng_prog = Rng{seed * 0x9E3779B97F4A7C15ull + 1};
        rng_in = Rng{seed * 0x9E3779B97F4A7C15ull + 2};
        rng_out = Rng{seed * 0x9E3779B97F4A7C15ull + 3};
        rng_scale = Rng{seed * 0x9E3779B97F4A7C15ull + 4};
        top->BD_PROG_VALID = 0;
        top->BD_HIN_VALID = 0;
    }

    int64_t beats() const { return int64_t(prog.size()) / kWords(BD_PROG_W); }
    bool gap(Rng& r) const { return stall > 0 && r.next() < stall; }

    void step() {
        const int pw = kWords(BD_PROG_W);
        uint32_t buf[kWords(BD_SCALE_W) + kWords(BD_BUS_W) + kWords(BD_PROG_W) + 4];
        uint32_t word[4];
        // -- drive: the host's streams and the memory, after the last edge.
        if (!prog_off && taken < beats() && !gap(rng_prog)) {
            prog_off = true;
            store(top->BD_PROG_PAYLOAD, &prog[size_t(taken * pw)]);
        }
        top->BD_PROG_VALID = prog_off;
        const int64_t n_seg = int64_t(segments.size()) / 2;
        if (!in_off && seg < n_seg && int64_t(host_out.size()) >= segments[2 * seg] &&
            !gap(rng_in)) {
            in_off = true;
            const uint64_t v = host_in[size_t(host_in_taken)];
            word[0] = uint32_t(v);
            word[1] = uint32_t(v >> 32);
            store(top->BD_HIN_PAYLOAD, word);
        }
        top->BD_HIN_VALID = in_off;
        const bool out_ready = !gap(rng_out), scale_ready = !gap(rng_scale);
        top->BD_HOUT_READY = out_ready;
        top->BD_SCALE_READY = scale_ready;
        top->BD_RB_READY = 1;
        mem.drive(edge + 1);
        top->BD_CMD_READY = mem.cmd_ready;
        top->BD_W_READY = mem.w_ready;
        top->BD_R_VALID = mem.r_valid;
        word[0] = uint32_t(mem.r_payload);
        word[1] = uint32_t(mem.r_payload >> 32);
        store(top->BD_R_PAYLOAD, word);
        top->clk = 0;
        top->eval();

        // -- sample: the transfers at the coming edge.
        if (prog_off && top->BD_PROG_READY) {
            prog_off = false;
            ++taken;
        }
        if (in_off && top->BD_HIN_READY) {
            in_off = false;
            ++host_in_taken;
            if (++pos == segments[2 * seg + 1]) {
                ++seg;
                pos = 0;
            }
        }
        if (out_ready && top->BD_HOUT_VALID) {
            load(top->BD_HOUT_PAYLOAD, buf);
            host_out.push_back(uint64_t(buf[0]) | uint64_t(buf[1]) << 32);
        }
        if (top->BD_RB_VALID) {
            load(top->BD_RB_PAYLOAD, buf);
            readback.push_back(buf[0]);
        }
        if (scale_ready && top->BD_SCALE_VALID) {  // an iteration's end: its writes are done
            load(top->BD_SCALE_PAYLOAD, buf);
            scales.insert(scales.end(), buf, buf + kWords(BD_SCALE_W));
            int64_t counters[BD_N_COUNTERS];
            bd_counters(top, counters);  // counters[0]: cycles
            at_scale.push_back(int64_t(host_out.size()));
            at_scale.push_back(counters[0]);
            if (snapshot_at_scale) {
                snapshots.insert(snapshots.end(), mem.words.begin(), mem.words.end());
            }
        }
        uint64_t c_payload = 0, w_payload = 0;
        if (top->BD_CMD_VALID) {
            load(top->BD_CMD_PAYLOAD, buf);
            c_payload = uint64_t(buf[0]) | uint64_t(buf[1]) << 32;
        }
        if (top->BD_W_VALID) {
            load(top->BD_W_PAYLOAD, buf);
            w_payload = uint64_t(buf[0]) | uint64_t(buf[1]) << 32;
        }
        mem.sample(edge + 1, top->BD_CMD_VALID, c_payload, top->BD_W_VALID, w_payload,
                   top->BD_R_READY);
        running = top->running;

        top->clk = 1;
        top->eval();
        ++edge;
        started |= running;
    }

    std::string progress() const {
        return std::to_string(taken) + " of " + std::to_string(beats()) + " prog beats taken, " +
               std::to_string(host_out.size()) + " words to the host, " +
               std::to_string(mem.commands) + " memory commands";
    }
};

// The file mode: every beat and HOST_IN word queued, run until the sequencer has finished.
void run_file(Host& h, int64_t max_cycles) {
    while (true) {
        if (h.edge >= max_cycles) {
            throw Failure(BD_TIMEOUT, "the iteration did not finish in " +
                                          std::to_string(max_cycles) + " cycles: " + h.progress());
        }
        h.step();
        if (h.started && !h.running && h.taken == h.beats()) break;
    }
    if (!h.mem.queue.empty()) {
        throw Failure(BD_NOT_IDLE, "the device finished with " +
                                       std::to_string(h.mem.queue.size()) +
                                       " memory commands outstanding");
    }
}

// This thread's CPU time: the loop's speed on one core, whatever else shares the machine.
int64_t cpu_ns() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

void configure(DramModel& mem, const int64_t* timing, double mem_stall, uint64_t seed) {
    // timing: latency, rate numerator, rate denominator, burst
    if (timing[0] < 1 || timing[1] < 1 || timing[2] < 1 || timing[3] < 1) {
        throw Failure(BD_BAD_INPUT, "latency, rate and burst must be >= 1");
    }
    mem.latency = timing[0];
    mem.rate_num = timing[1];
    mem.rate_den = timing[2];
    mem.cap = timing[3] * timing[2];
    mem.tokens = mem.cap;
    mem.stall = mem_stall;
    mem.rng = Rng{seed * 0x9E3779B97F4A7C15ull + 5};
}

void finish(Output& out, const Host* h, const DramModel& mem, BD_TOP_CLASS* top, int64_t ns,
            int64_t cpu) {
    if (h) {
        out.h[1] = h->edge;
        out.host_out = h->host_out;
        out.scales = h->scales;
        out.at_scale = h->at_scale;
        out.snapshots = h->snapshots;
        out.h[11] = h->taken;
        out.h[12] = h->host_in_taken;
    }
    out.h[2] = int64_t(out.host_out.size());
    out.h[3] = int64_t(out.scales.size()) / kWords(BD_SCALE_W);
    out.h[4] = kWords(BD_SCALE_W);
    out.h[5] = int64_t(mem.words.size());
    out.h[6] = mem.commands;
    out.h[7] = mem.read_words;
    out.h[8] = mem.write_words;
    out.h[9] = mem.stalls;
    out.h[10] = BD_N_COUNTERS;
    out.h[13] = ns;
    out.h[14] = cpu;
    out.counters.assign(BD_N_COUNTERS, 0);
    if (top) bd_counters(top, out.counters.data());
}

int file_main(const char* input, const char* output) {
    Input in{};
    Output out;
    DramModel mem;
    std::unique_ptr<VerilatedContext> ctx;
    std::unique_ptr<BD_TOP_CLASS> top;
    std::unique_ptr<Host> host;
    auto t0 = std::chrono::steady_clock::now();
    int64_t cpu0 = cpu_ns();
    try {
        in = read_input(input);
        mem.words = in.memory;
        configure(mem, &in.h[6], in.mem_stall, uint64_t(in.h[10]));
        ctx.reset(new VerilatedContext);
        // No reset: the wrapper ties it low, registers start from their initial values.
        top.reset(new BD_TOP_CLASS{ctx.get(), "top"});
        top->clk = 0;
        top->eval();
        host.reset(new Host(mem, top.get(), uint64_t(in.h[10]), in.host_stall));
        host->prog = in.prog;
        host->segments = in.segments;
        host->host_in = in.host_in;
        host->snapshot_at_scale = true;
        t0 = std::chrono::steady_clock::now();  // the loop's time: cycles per second
        cpu0 = cpu_ns();
        run_file(*host, in.h[11]);
        out.h[0] = BD_OK;
    } catch (const Failure& e) {
        out.h[0] = e.code;
        out.message = e.what();
    } catch (const VerilogStop& e) {
        out.h[0] = BD_VERILOG_STOP;
        out.message = e.what();
    } catch (const std::exception& e) {
        out.h[0] = BD_EXCEPTION;
        out.message = std::string("C++ exception: ") + e.what();
    }
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::steady_clock::now() - t0).count();
    finish(out, host.get(), mem, top.get(), int64_t(ns), cpu_ns() - cpu0);
    write_output(output, out, mem.words);
    return 0;
}

// -- the serve mode: one device kept alive, commands on stdin, answers on stdout ------------
// A command: 5 int64 (op, a, b, c, d) then its payload; an answer: 8 int64 (status, edges,
// n1, n2, n3, cycles counter, beats taken, HOST_IN words taken) then its payload, or after
// a failure (status != 0) n1 bytes of message, and the process ends. Ops (sim/
// device_verilator.py's DeviceSession): INIT (a DRAM words, b seed; payload 4 int64
// latency, rate numerator, denominator, burst and 2 float64 host stall, memory stall),
// WRITE (DRAM words from a: b uint64), READ (b words from a: n1 uint64 back), PROG (a beats
// of kWords(BD_PROG_W) uint32), HOST_IN (a uint64 words), RUN (until a host-bound words,
// b SCALE records or c read-back words in all, whichever target >= 0 comes first, within d
// cycles: the new host words n1 uint64, SCALE records n2 x kWords(BD_SCALE_W) uint32, read-
// back words n3 uint64), COUNTERS (n1 int64), QUIT.
enum Op : int64_t { OP_QUIT = 0, OP_INIT, OP_WRITE, OP_READ, OP_PROG, OP_HOST_IN, OP_RUN,
                    OP_COUNTERS };

template <typename T>
void get(std::vector<T>& v, int64_t n, const char* what) {
    if (n < 0 || n > (int64_t(1) << 34)) throw Failure(BD_BAD_INPUT, std::string("bad size of ") + what);
    v.resize(size_t(n));
    if (n && std::fread(v.data(), sizeof(T), size_t(n), stdin) != size_t(n)) {
        throw Failure(BD_BAD_INPUT, std::string("stdin ends inside ") + what);
    }
}

void put(const void* p, size_t n) {
    if (n && std::fwrite(p, 1, n, stdout) != n) std::exit(3);  // the host went away
}

struct Server {
    DramModel mem;
    std::unique_ptr<VerilatedContext> ctx;
    std::unique_ptr<BD_TOP_CLASS> top;
    std::unique_ptr<Host> host;
    size_t sent_out = 0, sent_scales = 0, sent_rb = 0;

    void answer(int64_t n1 = 0, int64_t n2 = 0, int64_t n3 = 0) {
        int64_t h[8] = {BD_OK, 0, n1, n2, n3, 0, 0, 0};
        if (host) {
            int64_t counters[BD_N_COUNTERS];
            bd_counters(top.get(), counters);
            h[1] = host->edge;
            h[5] = counters[0];
            h[6] = host->taken;
            h[7] = host->host_in_taken;
        }
        put(h, sizeof(h));
    }

    Host& live() {
        if (!host) throw Failure(BD_BAD_INPUT, "no INIT before this command");
        return *host;
    }

    void range(int64_t addr, int64_t n) {
        if (addr < 0 || n < 0 || addr + n > int64_t(mem.words.size())) {
            throw Failure(BD_BAD_INPUT, "DRAM words [" + std::to_string(addr) + ", " +
                                            std::to_string(addr + n) + ") outside the " +
                                            std::to_string(mem.words.size()) + "-word DRAM");
        }
    }

    void run(Host& h, int64_t outs, int64_t scales, int64_t reads, int64_t budget) {
        if (outs < 0 && scales < 0 && reads < 0) throw Failure(BD_BAD_INPUT, "RUN without a target");
        const int64_t sw = kWords(BD_SCALE_W), stop = h.edge + budget;
        auto reached = [&] {
            return (outs >= 0 && int64_t(h.host_out.size()) >= outs) ||
                   (scales >= 0 && int64_t(h.scales.size()) / sw >= scales) ||
                   (reads >= 0 && int64_t(h.readback.size()) >= reads);
        };
        while (!reached()) {
            if (h.edge >= stop) {
                throw Failure(BD_TIMEOUT, "the run did not reach its target in " +
                                              std::to_string(budget) + " cycles: " + h.progress());
            }
            h.step();
        }
        const int64_t n1 = int64_t(h.host_out.size() - sent_out);
        const int64_t n2 = int64_t(h.scales.size() - sent_scales) / sw;
        const int64_t n3 = int64_t(h.readback.size() - sent_rb);
        answer(n1, n2, n3);
        put(h.host_out.data() + sent_out, size_t(n1) * 8);
        put(h.scales.data() + sent_scales, size_t(n2 * sw) * 4);
        put(h.readback.data() + sent_rb, size_t(n3) * 8);
        sent_out = h.host_out.size();
        sent_scales = h.scales.size();
        sent_rb = h.readback.size();
    }

    bool command() {
        int64_t c[5];
        if (std::fread(c, sizeof(c), 1, stdin) != 1) return false;  // the host closed the pipe
        switch (c[0]) {
            case OP_QUIT:
                answer();
                return false;
            case OP_INIT: {
                std::vector<int64_t> timing;
                std::vector<double> stalls;
                get(timing, 4, "INIT's timing");
                get(stalls, 2, "INIT's stalls");
                if (host) throw Failure(BD_BAD_INPUT, "a second INIT");
                mem.words.assign(size_t(std::max<int64_t>(c[1], 0)), 0);
                configure(mem, timing.data(), stalls[1], uint64_t(c[2]));
                ctx.reset(new VerilatedContext);
                top.reset(new BD_TOP_CLASS{ctx.get(), "top"});
                top->clk = 0;
                top->eval();
                host.reset(new Host(mem, top.get(), uint64_t(c[2]), stalls[0]));
                answer();
                return true;
            }
            case OP_WRITE: {
                std::vector<uint64_t> v;
                get(v, c[2], "WRITE's words");
                range(c[1], c[2]);
                live();
                for (int64_t i = 0; i < c[2]; ++i) mem.words[size_t(c[1] + i)] = v[size_t(i)] & DramModel::kBusMask;
                answer();
                return true;
            }
            case OP_READ:
                range(c[1], c[2]);
                live();
                answer(c[2]);
                put(mem.words.data() + c[1], size_t(c[2]) * 8);
                return true;
            case OP_PROG: {
                std::vector<uint32_t> v;
                get(v, c[1] * kWords(BD_PROG_W), "PROG's beats");
                Host& h = live();
                h.prog.insert(h.prog.end(), v.begin(), v.end());
                answer();
                return true;
            }
            case OP_HOST_IN: {
                std::vector<uint64_t> v;
                get(v, c[1], "HOST_IN's words");
                Host& h = live();
                if (c[1]) {
                    h.host_in.insert(h.host_in.end(), v.begin(), v.end());
                    h.segments.push_back(0);  // sent when the host has its answer: now
                    h.segments.push_back(c[1]);
                }
                answer();
                return true;
            }
            case OP_RUN:
                run(live(), c[1], c[2], c[3], c[4]);
                return true;
            case OP_COUNTERS: {
                live();
                int64_t counters[BD_N_COUNTERS];
                bd_counters(top.get(), counters);
                answer(BD_N_COUNTERS);
                put(counters, sizeof(counters));
                return true;
            }
            default:
                throw Failure(BD_BAD_INPUT, "unknown command " + std::to_string(c[0]));
        }
    }
};

int serve_main() {
    Server s;
    int64_t status = BD_OK;
    std::string message;
    try {
        while (s.command()) std::fflush(stdout);
    } catch (const Failure& e) {
        status = e.code;
        message = e.what();
    } catch (const VerilogStop& e) {
        status = BD_VERILOG_STOP;
        message = e.what();
    } catch (const std::exception& e) {
        status = BD_EXCEPTION;
        message = std::string("C++ exception: ") + e.what();
    }
    if (status != BD_OK) {
        int64_t h[8] = {status, s.host ? s.host->edge : 0, int64_t(message.size()), 0, 0, 0, 0, 0};
        put(h, sizeof(h));
        put(message.data(), message.size());
    }
    std::fflush(stdout);
    return 0;
}
}  // namespace

int main(int argc, char** argv) {
    if (argc == 2 && std::strcmp(argv[1], "--serve") == 0) return serve_main();
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s <input file> <output file> | --serve\n", argv[0]);
        return 2;
    }
    return file_main(argv[1], argv[2]);
}
