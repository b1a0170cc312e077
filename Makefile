# s1.c: the s1 paper ("s1: Simple test-time scaling") in plain C and CUDA.
#
#   make          the CPU programs: ./tokenizer, ./data, ./s1
#   make test     builds everything, runs every test; last line "N passed, N failed"
#   make cuda     compiles and links every .cu with nvcc for sm_90, warnings as errors
#   make emu      compiles the same .cu files with g++ against common/cuemu.h (CPU)
#   make dev      the kernel workbench dev/OP.cu, emulated (build/dev/OP; tutorial/kernels.md)
#   make fuzz     builds the fuzz harnesses (tests/fuzz/) with clang's libFuzzer,
#                 ASan and UBSan and runs each for FUZZ_SECONDS (default 20)
#   make clean
#
# Build variables:
#   (default)     -ffp-contract=off and no -march: every float operation rounds as
#                 the source writes it, so (with common/detmath.h for log, exp, sin,
#                 cos and pow) training, loss and sampling give the same bits on
#                 every x86-64 CPU; the binaries run on any x86-64 and under valgrind
#   FAST=1        adds -march=native: the same bits (tests/test_repro.sh compares
#                 the two), 2.1x faster training on an AVX-512 CPU, but the binaries
#                 only run on CPUs like the build machine, and not under valgrind
#   ARCH_FLAGS=-march=native  the old build: fused multiply-adds as well, another
#                 ~15% faster, but its results differ from another CPU's
#   SANITIZE=1    the C programs and C tests with ASan + UBSan
#                 (-fno-sanitize-recover=all); `make test SANITIZE=1` runs them
#   PTXAS_V=1     nvcc with -Xptxas -v: ptxas prints every kernel's registers, stack
#                 frame, spill stores/loads and shared memory while `make cuda` builds
#                 (nvcc's flags are not recorded in build/flags/: use it on a fresh
#                 build/cuda, or with -B). `make ptxas` prints that report for the
#                 kernels of sft.cu and sample.cu alone (tutorial/cuda.md's table)
# A change of these rebuilds what they affect (build/flags/ records them).
#
# Each program is one .c file; a program that needs another's functions
# #includes that file (its main is compiled out by a *_NO_MAIN macro), so
# there is no library to build. Every program depends on every source, which
# keeps the rules short and the builds correct.

CC ?= gcc
CXX ?= g++
CFLAGS ?= -O3
# No fused multiply-add: x86-64 CPUs with FMA would otherwise round a*b+c once where
# others round twice. Vectorisation never reorders a sum without -ffast-math, so the
# vector width the compiler picks (SSE2, AVX2, AVX-512) changes speed, not results.
ARCH_FLAGS ?= -ffp-contract=off
ifeq ($(FAST),1)
ARCH_FLAGS += -march=native
endif
ifeq ($(SANITIZE),1)
SAN_FLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all
endif
C_WARN = -Wall -Wextra -Werror
BASE_CFLAGS = $(CFLAGS) $(ARCH_FLAGS) -std=gnu11 $(C_WARN) -fopenmp -I.
ALL_CFLAGS = $(BASE_CFLAGS) $(SAN_FLAGS)
LDLIBS = -lm

# Flag stamps: a file per flag set, rewritten only when the flags change, so
# that `make SANITIZE=1` then `make` rebuilds what the flags went into.
FLAGS_C := build/flags/c
FLAGS_BASE := build/flags/base
$(shell mkdir -p build/flags)
$(shell echo '$(ALL_CFLAGS)' | cmp -s - $(FLAGS_C) || echo '$(ALL_CFLAGS)' > $(FLAGS_C))
$(shell echo '$(BASE_CFLAGS)' | cmp -s - $(FLAGS_BASE) || echo '$(BASE_CFLAGS)' > $(FLAGS_BASE))

CUDA_HOME ?= /usr/local/cuda
NVCC ?= $(CUDA_HOME)/bin/nvcc
NVCCFLAGS = -O3 -arch=sm_90 -std=c++17 -I. --Werror all-warnings -Xcompiler -Wall,-Wextra,-Werror
NVCC_LDLIBS = -lcublas -lcublasLt -lnccl -lpthread
ifeq ($(PTXAS_V),1)
NVCCFLAGS += -Xptxas -v
endif

# The emulated build: the same .cu sources as C++17 on the CPU (common/cuemu.h).
EMU_CXXFLAGS = -O2 -ffp-contract=off $(EMU_ARCH) -std=c++17 -x c++ -include common/cuemu.h -I. -isystem $(CUDA_HOME)/include \
               -fno-strict-aliasing -Wall -Wextra -Werror -Wno-unknown-pragmas -fopenmp -pthread
EMU_LDLIBS = -lm -pthread

C_PROGRAMS := $(basename $(wildcard tokenizer.c data.c s1.c))
CU_PROGRAMS := $(basename $(wildcard sft.cu sample.cu))
SOURCES := $(wildcard *.c *.cu common/*.h common/*.cuh)

C_TESTS := $(patsubst tests/%.c,build/tests/%,$(wildcard tests/test_*.c))
# helpers the shell tests call (not run by tests/run.sh themselves)
C_TOOLS := $(patsubst tests/%.c,build/tests/%,$(wildcard tests/tool_*.c))
EMU_TESTS := $(patsubst tests/%.cu,build/tests/%,$(wildcard tests/emu_*.cu))
EMU_PROGRAMS := $(addprefix build/emu/,$(CU_PROGRAMS))
CUDA_PROGRAMS := $(addprefix build/cuda/,$(CU_PROGRAMS))
# The emulator's own checks, run by tests/test_cuemu.sh: kernels with bugs it must
# catch (tests/cuemu_neg_*.cu), also built with ASan+UBSan in single-thread mode
# (static __shared__ then gets redzones) and with TSan, and a kernel test with the ucontext switch.
EMU_NEG := $(patsubst tests/%.cu,build/tests/%,$(wildcard tests/cuemu_neg_*.cu))
EMU_NEG_ASAN := $(patsubst tests/%.cu,build/tests/asan/%,$(wildcard tests/cuemu_neg_*.cu))
EMU_NEG_TSAN := $(patsubst tests/%.cu,build/tests/tsan/%,$(wildcard tests/cuemu_neg_*.cu))
EMU_UCONTEXT := $(patsubst tests/%.cu,build/tests/ucontext/%,$(wildcard tests/emu_cuemu_kernels.cu))
EMU_ASAN_FLAGS = -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -DCUEMU_SINGLE_THREAD
# `make cuda` also compiles every test .cu with nvcc (-c: running them needs a GPU), and
# links the kernel tests against the s1.c oracle as build/cuda/tests/emu_kernels* (tests/run_gpu.sh
# runs them on a GPU; the emulator's own tests, emu_cuemu_* and emu_mma, have no GPU twin)
CUDA_TEST_OBJECTS := $(patsubst tests/%.cu,build/cuda/%.o,$(wildcard tests/emu_*.cu tests/cuemu_neg_*.cu))
CUDA_KERNEL_TESTS := $(patsubst tests/%.cu,build/cuda/tests/%,$(wildcard tests/emu_kernels*.cu))
# GPU benchmarks (bench/*.cu): nvcc only, since timing them needs a GPU
CUDA_BENCH := $(patsubst bench/%.cu,build/cuda/bench/%,$(wildcard bench/*.cu))

# The fuzz harnesses (tests/fuzz/fuzz_*.c): libFuzzer builds in build/fuzz/, and
# gcc builds with tests/fuzz/replay.c as main() in build/tests/ that `make test`
# runs over the regression corpus tests/fuzz/corpus/<target>/.
FUZZ_TARGETS := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_REPLAY := $(addprefix build/tests/fuzz_,$(FUZZ_TARGETS))
FUZZ_CC ?= clang
FUZZ_CFLAGS = -g -O1 -std=gnu11 -I. -DS1C_FUZZ -include tests/fuzz/track.h \
              -fsanitize=fuzzer,address,undefined,float-cast-overflow -fno-sanitize-recover=all
FUZZ_SECONDS ?= 20

# The kernel workbench (dev/, tutorial/kernels.md): each dev/OP.cu is emulated as
# build/dev/OP (`make dev`, run by dev/run and tests/test_dev.sh) and, with `make cuda`,
# built for sm_90 as build/cuda/dev/OP (its --bench times it on a GPU). Both link the
# s1.c oracle (tests/s1_ref.o).
DEV_OPS := $(patsubst dev/%.cu,%,$(wildcard dev/*.cu))
DEV_PROGRAMS := $(addprefix build/dev/,$(DEV_OPS))
CUDA_DEV_PROGRAMS := $(addprefix build/cuda/dev/,$(DEV_OPS))
DEV_DEPS := dev/dev.cuh build/tests/s1_ref.o tests/test.h tests/kernel_test.h $(SOURCES)

.PHONY: all test cuda emu clean fuzz fuzz-build dev ptxas
all: $(C_PROGRAMS)

# make print-VAR: the value of a variable (tests/test_repro.sh builds with the Makefile's flags)
print-%:
	@echo '$($*)'

$(C_PROGRAMS): %: %.c $(SOURCES) $(FLAGS_C)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LDLIBS)

build/tests/test_%: tests/test_%.c tests/test.h $(SOURCES) $(FLAGS_C)
	@mkdir -p build/tests
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LDLIBS)

build/tests/tool_%: tests/tool_%.c $(SOURCES) $(FLAGS_C)
	@mkdir -p build/tests
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LDLIBS)

build/tests/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h tests/fuzz/track.h tests/fuzz/replay.c $(SOURCES) $(FLAGS_C)
	@mkdir -p build/tests
	$(CC) $(ALL_CFLAGS) -DS1C_FUZZ -include tests/fuzz/track.h -o $@ $< tests/fuzz/replay.c $(LDLIBS)

build/fuzz/%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h tests/fuzz/track.h $(SOURCES)
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< -lm

fuzz-build: $(addprefix build/fuzz/,$(FUZZ_TARGETS))

# Each target for FUZZ_SECONDS from its corpus (tests/fuzz/corpus/<target>/,
# never written to: new inputs go to build/fuzz/corpus/<target>/). A crash stops
# the run and leaves build/fuzz/crash-*: reproduce it with build/tests/fuzz_<target> FILE,
# fix it, and add the file to tests/fuzz/corpus/<target>/ so make test replays it.
fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	    mkdir -p build/fuzz/corpus/$$t; \
	    echo "fuzz: $$t for $(FUZZ_SECONDS)s"; \
	    build/fuzz/$$t build/fuzz/corpus/$$t tests/fuzz/corpus/$$t -max_total_time=$(FUZZ_SECONDS) \
	        -max_len=65536 -timeout=10 -rss_limit_mb=4096 -artifact_prefix=build/fuzz/ \
	        -print_final_stats=1 2>build/fuzz/$$t.log || { tail -40 build/fuzz/$$t.log; exit 1; }; \
	    grep -E "^#[0-9]+[[:space:]]+DONE|^stat::number_of_executed_units|^stat::peak_rss" build/fuzz/$$t.log | tr '\n' ' '; echo; \
	done

build/tests/emu_%: tests/emu_%.cu tests/test.h $(SOURCES)
	@mkdir -p build/tests
	$(CXX) $(EMU_CXXFLAGS) -o $@ $< $(EMU_LDLIBS)

# The kernel tests compare against s1.c, which is C: tests/s1_ref.c wraps it
# (compiled with gcc) and is linked in (-x none: the object is not C++ source).
# (never sanitized: the emulated tests it links into are built without sanitizers)
build/tests/s1_ref.o: tests/s1_ref.c $(SOURCES) $(FLAGS_BASE)
	@mkdir -p build/tests
	$(CC) $(BASE_CFLAGS) -c -o $@ $<

EMU_KERNEL_TESTS := $(patsubst tests/%.cu,build/tests/%,$(wildcard tests/emu_kernels*.cu))
$(EMU_KERNEL_TESTS): build/tests/%: tests/%.cu build/tests/s1_ref.o tests/test.h tests/kernel_test.h $(SOURCES)
	@mkdir -p build/tests
	$(CXX) $(EMU_CXXFLAGS) -o $@ $< -x none build/tests/s1_ref.o $(EMU_LDLIBS)

build/tests/cuemu_neg_%: tests/cuemu_neg_%.cu $(SOURCES)
	@mkdir -p build/tests
	$(CXX) $(EMU_CXXFLAGS) -o $@ $< $(EMU_LDLIBS)

build/tests/asan/cuemu_neg_%: tests/cuemu_neg_%.cu $(SOURCES)
	@mkdir -p build/tests/asan
	$(CXX) $(EMU_CXXFLAGS) $(EMU_ASAN_FLAGS) -o $@ $< $(EMU_LDLIBS)

build/tests/tsan/cuemu_neg_%: tests/cuemu_neg_%.cu $(SOURCES)
	@mkdir -p build/tests/tsan
	$(CXX) $(EMU_CXXFLAGS) -O1 -g -fsanitize=thread -o $@ $< $(EMU_LDLIBS)

build/tests/ucontext/emu_%: tests/emu_%.cu tests/test.h $(SOURCES)
	@mkdir -p build/tests/ucontext
	$(CXX) $(EMU_CXXFLAGS) -DCUEMU_UCONTEXT -o $@ $< $(EMU_LDLIBS)

build/emu/%: %.cu $(SOURCES)
	@mkdir -p build/emu
	$(CXX) $(EMU_CXXFLAGS) -o $@ $< $(EMU_LDLIBS)

build/cuda/%: %.cu $(SOURCES)
	@mkdir -p build/cuda
	$(NVCC) $(NVCCFLAGS) -o $@ $< $(NVCC_LDLIBS)

build/cuda/%.o: tests/%.cu tests/test.h tests/kernel_test.h $(SOURCES)
	@mkdir -p build/cuda
	$(NVCC) $(NVCCFLAGS) -c -o $@ $<

build/cuda/bench/%: bench/%.cu $(SOURCES)
	@mkdir -p build/cuda/bench
	$(NVCC) $(NVCCFLAGS) -o $@ $< $(NVCC_LDLIBS)

build/cuda/tests/%: build/cuda/%.o build/tests/s1_ref.o
	@mkdir -p build/cuda/tests
	$(NVCC) $(NVCCFLAGS) -o $@ $< build/tests/s1_ref.o $(NVCC_LDLIBS) -Xcompiler -fopenmp

build/dev/%: dev/%.cu $(DEV_DEPS)
	@mkdir -p build/dev
	$(CXX) $(EMU_CXXFLAGS) -o $@ $< -x none build/tests/s1_ref.o $(EMU_LDLIBS)

build/cuda/dev/%: dev/%.cu $(DEV_DEPS)
	@mkdir -p build/cuda/dev
	$(NVCC) $(NVCCFLAGS) -o $@ $< build/tests/s1_ref.o $(NVCC_LDLIBS) -Xcompiler -fopenmp

dev: $(DEV_PROGRAMS)

# ptxas's resource report (registers, stack frame, spills, shared memory) of every kernel
# the two GPU programs compile, names demangled: build/ptxas/PROGRAM.txt, and on stdout
ptxas:
	@mkdir -p build/ptxas
	@for p in $(CU_PROGRAMS); do \
	    $(NVCC) $(filter-out -Xptxas -v,$(NVCCFLAGS)) -Xptxas -v -c -o build/ptxas/$$p.o $$p.cu >build/ptxas/$$p.raw 2>&1 \
	        || { cat build/ptxas/$$p.raw; exit 1; }; \
	    c++filt <build/ptxas/$$p.raw >build/ptxas/$$p.txt; \
	    echo "== $$p.cu (build/ptxas/$$p.txt)"; grep -E "Compiling entry|stack frame|Used" build/ptxas/$$p.txt; \
	done

emu: $(EMU_PROGRAMS) $(EMU_TESTS) $(EMU_NEG) $(EMU_NEG_ASAN) $(EMU_NEG_TSAN) $(EMU_UCONTEXT)

cuda: $(CUDA_PROGRAMS) $(CUDA_TEST_OBJECTS) $(CUDA_KERNEL_TESTS) $(CUDA_BENCH) $(CUDA_DEV_PROGRAMS)

test: all $(C_TESTS) $(C_TOOLS) $(FUZZ_REPLAY) emu dev
	@S1C_SANITIZE=$(SANITIZE) tests/run.sh

clean:
	rm -rf build $(C_PROGRAMS) out
