# s1.c: the s1 paper ("s1: Simple test-time scaling") in plain C and CUDA.
#
#   make          the CPU programs: ./tokenizer, ./data, ./s1
#   make test     builds everything, runs every test; last line "N passed, N failed"
#   make cuda     compiles and links every .cu with nvcc for sm_90, warnings as errors
#   make emu      compiles the same .cu files with g++ against common/cuemu.h (CPU)
#   make clean
#
# Each program is one .c file; a program that needs another's functions
# #includes that file (its main is compiled out by a *_NO_MAIN macro), so
# there is no library to build. Every program depends on every source, which
# keeps the rules short and the builds correct.

CC ?= gcc
CXX ?= g++
CFLAGS ?= -O3 -march=native
C_WARN = -Wall -Wextra -Werror
ALL_CFLAGS = $(CFLAGS) -std=gnu11 $(C_WARN) -fopenmp -I.
LDLIBS = -lm

CUDA_HOME ?= /usr/local/cuda
NVCC ?= $(CUDA_HOME)/bin/nvcc
NVCCFLAGS = -O3 -arch=sm_90 -std=c++17 -I. --Werror all-warnings -Xcompiler -Wall,-Wextra,-Werror
NVCC_LDLIBS = -lcublas -lnccl

# The emulated build: the same .cu sources as C++17 on the CPU (common/cuemu.h).
EMU_CXXFLAGS = -O2 -std=c++17 -x c++ -include common/cuemu.h -I. -isystem $(CUDA_HOME)/include \
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
# `make cuda` also compiles every test .cu with nvcc (-c: running them needs a GPU)
CUDA_TEST_OBJECTS := $(patsubst tests/%.cu,build/cuda/%.o,$(wildcard tests/emu_*.cu tests/cuemu_neg_*.cu))

.PHONY: all test cuda emu clean
all: $(C_PROGRAMS)

$(C_PROGRAMS): %: %.c $(SOURCES)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LDLIBS)

build/tests/test_%: tests/test_%.c tests/test.h $(SOURCES)
	@mkdir -p build/tests
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LDLIBS)

build/tests/tool_%: tests/tool_%.c $(SOURCES)
	@mkdir -p build/tests
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LDLIBS)

build/tests/emu_%: tests/emu_%.cu tests/test.h $(SOURCES)
	@mkdir -p build/tests
	$(CXX) $(EMU_CXXFLAGS) -o $@ $< $(EMU_LDLIBS)

# The kernel tests compare against s1.c, which is C: tests/s1_ref.c wraps it
# (compiled with gcc) and is linked in (-x none: the object is not C++ source).
build/tests/s1_ref.o: tests/s1_ref.c $(SOURCES)
	@mkdir -p build/tests
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

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

emu: $(EMU_PROGRAMS) $(EMU_TESTS) $(EMU_NEG) $(EMU_NEG_ASAN) $(EMU_NEG_TSAN) $(EMU_UCONTEXT)

cuda: $(CUDA_PROGRAMS) $(CUDA_TEST_OBJECTS)

test: all $(C_TESTS) $(C_TOOLS) emu
	@tests/run.sh

clean:
	rm -rf build $(C_PROGRAMS) out
