// C++ host of a Verilated barista Accelerator: runs a whole "program" (buffer writes and run
// commands of one GEMM pass) without Python in the loop. Built by sim/verilator_driver.py into
// a shared library; the port layout comes from barista_layout.h, which sim/verilator_ports.py
// generates from the Amaranth StructLayouts (run_layout, write_layout, output_layout), so Python
// and C++ share one definition of every field.
//
// The program is barista_hw/host.py's, flattened by sim/verilator_program.py, and so is the host
// policy: one write beat per cycle on `wr`, in program order, each write segment starting once
// the chunk it waits for (`wait_chunk`) has finished; the command of chunk c offered once all of
// c's writes have landed or the last of them is presented in the same cycle (`serial`: only the
// cycle after) and held until accepted; `o` always ready unless a stall is asked. `o` beats are
// stored in order; each is attributed to the running chunk.
// Errors (cycle budgets, protocol violations, Verilator $fatal/$stop/$finish, C++ exceptions)
// return a code and a message; the Python side raises them as exceptions.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include "barista_layout.h"  // BARISTA_TOP_HEADER, BARISTA_TOP_CLASS and the field constants
#include BARISTA_TOP_HEADER
#include "verilated.h"
#if VM_TRACE_FST
#include "verilated_fst_c.h"
#endif

#include "verilated_io.h"  // VerilogStop, vl_* handlers, fields, store/load, Rng

namespace {
enum Status : int64_t {
    BS_OK = 0,
    BS_CYCLE_BUDGET = 1,       // the whole program exceeded its cycle budget
    BS_CMD_NOT_ACCEPTED = 2,   // a command was offered longer than its budget
    BS_NOT_FINISHED = 3,       // a command stayed busy longer than its budget
    BS_TOO_MANY_BEATS = 4,     // more `o` beats than the program expects
    BS_STRAY_BEAT = 5,         // an `o` beat while no command runs
    BS_WR_NOT_READY = 6,       // `wr` not ready (the accelerator promises it always is)
    BS_VERILOG_STOP = 7,       // Verilator $fatal / $stop / $finish / internal fatal
    BS_EXCEPTION = 8,          // any other C++ exception
    BS_BAD_PROGRAM = 9,        // inconsistent program arrays
    BS_TRACE = 10,             // tracing asked of a build without it
};
}  // namespace

// -- the program handed over by Python (all fields 8 bytes wide: no padding surprises) -------
extern "C" {
struct BsProgram {
    int64_t n_chunks;
    const int64_t* cmd;        // n_chunks x BS_CMD_FIELDS, in run_layout order
    const int64_t* chunk_seg;  // n_chunks x 2: [first, end) write segments of the chunk
    const int64_t* expect;     // n_chunks: `o` beats the chunk must emit
    const int64_t* budget;     // n_chunks: cycles from acceptance to busy low, at most
    int64_t n_segs;
    const int64_t* segs;       // n_segs x 5: sel, base address, first word, count, wait_chunk
    int64_t n_words;
    const int32_t* words;      // n_words x BS_WR_LANES operand lanes
    int64_t serial;            // 1: offer a command only the cycle after its last write
    double o_stall;            // probability that `o.ready` is low in a cycle
    double wr_gap;             // probability that the host skips a write cycle
    int64_t stall_seed;
    int64_t max_cycles;        // budget of the whole program
    int64_t accept_budget;     // cycles a command may wait to be accepted
    const char* trace_path;    // FST file, or null
    int64_t fatal_at;          // test hook: raise a Verilator fatal at this edge (-1: never)
    // outputs
    int64_t out_cap;           // beats the output arrays hold
    int32_t* out_data;         // out_cap x BS_O_LANES
    uint8_t* out_last;         // out_cap
    int64_t* chunk_accept;     // n_chunks: edge that accepted the command
    int64_t* chunk_done;       // n_chunks: edge after which busy was low
    int64_t* chunk_beats;      // n_chunks: `o` beats seen while the chunk ran
    int64_t* result;           // [edges, beats, error chunk, write beats, cycles port]
    char* message;             // error text
    int64_t message_len;
};
}

namespace {
struct Sim {
    std::unique_ptr<VerilatedContext> ctx;
    std::unique_ptr<BARISTA_TOP_CLASS> top;
    bool dirty = false;

    void make() {
        top.reset();
        ctx.reset(new VerilatedContext);
#if VM_TRACE_FST
        ctx->traceEverOn(true);
#endif
        top.reset(new BARISTA_TOP_CLASS{ctx.get(), "top"});
        // No reset: the wrapper ties it low, registers start from their initial values.
        top->clk = 0;
        top->BS_WR_VALID = 0;
        top->BS_CMD_VALID = 0;
        top->BS_O_READY = 1;
        top->eval();
        dirty = false;
    }
};

int64_t fail(BsProgram* p, int64_t code, const std::string& text) {
    if (p->message && p->message_len > 0) {
        std::snprintf(p->message, size_t(p->message_len), "%s", text.c_str());
    }
    return code;
}

int64_t run(Sim& sim, BsProgram* p) {
    auto* top = sim.top.get();
    for (int64_t c = 0; c < p->n_chunks; ++c) {
        p->chunk_accept[c] = p->chunk_done[c] = -1;
        p->chunk_beats[c] = 0;
    }
    for (int64_t s = 0; s < p->n_segs; ++s) {
        const int64_t* g = p->segs + 5 * s;
        if (g[3] < 1 || g[2] < 0 || g[2] + g[3] > p->n_words || (g[0] != 0 && g[0] != 1)) {
            return fail(p, BS_BAD_PROGRAM, "write segment " + std::to_string(s) + " is malformed");
        }
    }
    p->result[2] = -1;

#if VM_TRACE_FST
    std::unique_ptr<VerilatedFstC> tfp_holder;
    VerilatedFstC* tfp = nullptr;
    if (p->trace_path) {
        tfp_holder.reset(new VerilatedFstC);
        top->trace(tfp_holder.get(), 99);
        tfp_holder->open(p->trace_path);
        tfp = tfp_holder.get();
    }
#else
    if (p->trace_path) return fail(p, BS_TRACE, "this build has no FST tracing (--trace-fst)");
#endif

    uint32_t wr_w[kMaxWords] = {0}, cmd_w[kMaxWords] = {0}, o_w[kMaxWords] = {0};
    Rng rng{uint64_t(p->stall_seed) * 0x9E3779B97F4A7C15ull + 1};
    int64_t edge = 0, accepted = 0, finished = 0, beats = 0, writes = 0;
    int64_t seg = 0, pos = 0, cmd_wait = 0;
    bool running = false, cmd_loaded = false;
    top->BS_O_READY = 1;

    while (finished < p->n_chunks) {
        if (edge >= p->max_cycles) {
            p->result[2] = accepted;
            return fail(p, BS_CYCLE_BUDGET,
                        "the program exceeded its budget of " + std::to_string(p->max_cycles) +
                            " cycles (" + std::to_string(finished) + " of " +
                            std::to_string(p->n_chunks) + " chunks finished)");
        }
        if (edge == p->fatal_at) vl_fatal(__FILE__, __LINE__, "", "injected fatal (test hook)");

        // -- host decisions for this cycle -------------------------------------------------
        bool wr_v = false;
        if (seg < p->n_segs) {
            const int64_t* g = p->segs + 5 * seg;
            if (g[4] < finished && !(p->wr_gap > 0 && rng.next() < p->wr_gap)) {
                wr_v = true;
                std::memset(wr_w, 0, sizeof(wr_w));
                put_field(wr_w, BS_WR_SEL_OFF, BS_WR_SEL_W, uint64_t(g[0]));
                put_field(wr_w, BS_WR_ADDR_OFF, BS_WR_ADDR_W, uint64_t(g[1] + pos));
                const int32_t* lanes = p->words + (g[2] + pos) * BS_WR_LANES;
                for (int l = 0; l < BS_WR_LANES; ++l) {
                    put_field(wr_w, BS_WR_DATA_OFF + l * BS_LANE_W, BS_LANE_W, uint64_t(lanes[l]));
                }
                store(top->BS_WR_PAYLOAD, wr_w);
            }
        }
        top->BS_WR_VALID = wr_v;

        bool cmd_v = false;
        if (accepted < p->n_chunks) {
            const int64_t seg_end = p->chunk_seg[2 * accepted + 1];
            bool ready_to_go = seg >= seg_end;
            if (!ready_to_go && !p->serial && wr_v && seg == seg_end - 1) {
                ready_to_go = pos == p->segs[5 * seg + 3] - 1;  // its last write lands now
            }
            if (ready_to_go) {
                cmd_v = true;
                if (!cmd_loaded) {
                    std::memset(cmd_w, 0, sizeof(cmd_w));
                    const int64_t* f = p->cmd + accepted * BS_CMD_FIELDS;
                    for (int i = 0; i < BS_CMD_FIELDS; ++i) {
                        put_field(cmd_w, BS_CMD_OFF[i], BS_CMD_W[i], uint64_t(f[i]));
                    }
                    store(top->BS_CMD_PAYLOAD, cmd_w);
                    cmd_loaded = true;
                }
            }
        }
        top->BS_CMD_VALID = cmd_v;
        const bool o_ready = !(p->o_stall > 0 && rng.next() < p->o_stall);
        top->BS_O_READY = o_ready;

        // -- settle, sample the handshakes, clock edge --------------------------------------
        top->clk = 0;
        top->eval();
#if VM_TRACE_FST
        if (tfp) tfp->dump(uint64_t(2 * edge));
#endif
        if (wr_v && !top->BS_WR_READY) {
            p->result[2] = accepted;
            return fail(p, BS_WR_NOT_READY, "wr.ready is low; the accelerator must always accept");
        }
        const bool cmd_fire = cmd_v && top->BS_CMD_READY;
        if (top->BS_O_VALID && o_ready) {
            if (!running) {
                p->result[2] = accepted;
                return fail(p, BS_STRAY_BEAT, "an o beat arrived while no command was running");
            }
            if (beats >= p->out_cap || p->chunk_beats[accepted - 1] >= p->expect[accepted - 1]) {
                p->result[2] = accepted - 1;
                return fail(p, BS_TOO_MANY_BEATS,
                            "chunk " + std::to_string(accepted - 1) + " emitted more than its " +
                                std::to_string(p->expect[accepted - 1]) + " o beats");
            }
            load(top->BS_O_PAYLOAD, o_w);
            int32_t* row = p->out_data + beats * BS_O_LANES;
            for (int l = 0; l < BS_O_LANES; ++l) {
                // Result lanes are BS_O_LANE_W bits (at most 32), sign-extended: a minifloat
                // engine's codes are read back as unsigned by the Python side.
                row[l] = int32_t(sign_extend(
                    get_field(o_w, BS_O_DATA_OFF + l * BS_O_LANE_W, BS_O_LANE_W), BS_O_LANE_W));
            }
            p->out_last[beats] = uint8_t(get_field(o_w, BS_O_LAST_OFF, 1));
            ++beats;
            ++p->chunk_beats[accepted - 1];
        }
        top->clk = 1;
        top->eval();
        ++edge;
#if VM_TRACE_FST
        if (tfp) tfp->dump(uint64_t(2 * edge - 1));
#endif

        // -- host state after the edge -------------------------------------------------------
        if (wr_v) {
            ++writes;
            if (++pos == p->segs[5 * seg + 3]) {
                ++seg;
                pos = 0;
            }
        }
        if (cmd_fire) {
            p->chunk_accept[accepted] = edge;
            ++accepted;
            running = true;
            cmd_loaded = false;
            cmd_wait = 0;
        } else if (cmd_v && ++cmd_wait > p->accept_budget) {
            p->result[2] = accepted;
            return fail(p, BS_CMD_NOT_ACCEPTED,
                        "command " + std::to_string(accepted) + " was not accepted within " +
                            std::to_string(p->accept_budget) + " cycles");
        }
        if (running) {
            if (!top->busy) {
                p->chunk_done[accepted - 1] = edge;
                finished = accepted;
                running = false;
            } else if (edge - p->chunk_accept[accepted - 1] > p->budget[accepted - 1]) {
                p->result[2] = accepted - 1;
                return fail(p, BS_NOT_FINISHED,
                            "command " + std::to_string(accepted - 1) + " stayed busy beyond its " +
                                std::to_string(p->budget[accepted - 1]) + "-cycle budget");
            }
        }
    }
    top->BS_WR_VALID = 0;
    top->BS_CMD_VALID = 0;
    top->BS_O_READY = 1;
    top->clk = 0;
    top->eval();
#if VM_TRACE_FST
    if (tfp) {
        tfp->dump(uint64_t(2 * edge));
        tfp->close();
    }
#endif
    p->result[0] = edge;
    p->result[1] = beats;
    p->result[3] = writes;
    p->result[4] = int64_t(top->cycles);
    return BS_OK;
}
}  // namespace

extern "C" {
const char* bs_layout() { return BS_LAYOUT_JSON; }

void* bs_create() {
    try {
        auto* sim = new Sim;
        sim->make();
        return sim;
    } catch (...) {
        return nullptr;
    }
}

void bs_destroy(void* handle) { delete static_cast<Sim*>(handle); }

int64_t bs_run(void* handle, BsProgram* p) {
    auto& sim = *static_cast<Sim*>(handle);
    int64_t code;
    try {
        if (sim.dirty) sim.make();  // a failed run leaves the model mid-command: start afresh
        code = run(sim, p);
    } catch (const VerilogStop& e) {
        code = fail(p, BS_VERILOG_STOP, e.what());
    } catch (const std::exception& e) {
        code = fail(p, BS_EXCEPTION, std::string("C++ exception: ") + e.what());
    } catch (...) {
        code = fail(p, BS_EXCEPTION, "unknown C++ exception");
    }
    if (code != BS_OK) sim.dirty = true;
    return code;
}
}
