package main

import (
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"kit/ext"
)

type benchEvent struct {
	typ string
	ev  interface{}
}

func benchEvents() []benchEvent {
	return []benchEvent{
		{"message_update", ext.MessageUpdateEvent{Chunk: "Let me look at the failing test first."}},
		{"tool_call", ext.ToolCallEvent{ToolName: "bash", ToolCallID: "toolu_01A", ToolKind: "execute",
			Input:      `{"command":"go test ./...","timeout":120}`,
			ParsedArgs: map[string]any{"command": "go test ./...", "timeout": float64(120)}, Source: "llm"}},
		{"tool_result", ext.ToolResultEvent{ToolCallID: "toolu_01A", ToolName: "bash", ToolKind: "execute",
			Input: `{"command":"go test ./..."}`, Content: "ok  \texample.com/pkg/app\t0.012s\n", Metadata: `{"exit_code":0}`}},
		{"llm_usage", ext.LLMUsageEvent{InputTokens: 1200, OutputTokens: 85, CacheReadTokens: 900, Cost: 0.0051,
			Model: "claude-sonnet-4-5-20250929", Provider: "anthropic", FinishReason: "tool-calls"}},
		{"step_start", ext.StepStartEvent{StepNumber: 3}},
	}
}

// timeCalls calls h n times in bursts of `burst` calls and returns ns per
// call, counting only the time inside bursts. Between bursts it pauses, as
// KIT does between events, so a bridge's writer goroutine can keep up; with
// pause 0 the calls run back to back and the writer is saturated.
//
// It returns wall-clock ns per call and CPU ns per call of the calling OS
// thread (the benchmark goroutine is locked to it): on a busy machine the
// wall clock also counts time the thread spent descheduled, the thread CPU
// time does not.
func timeCalls(h ext.Handler, ev interface{}, ctx ext.Context, n, burst int, pause time.Duration) (float64, float64) {
	var spent, cpu time.Duration
	for done := 0; done < n; {
		k := burst
		if n-done < k {
			k = n - done
		}
		c0 := threadCPU()
		start := time.Now()
		for i := 0; i < k; i++ {
			h(ev, ctx)
		}
		spent += time.Since(start)
		cpu += threadCPU() - c0
		done += k
		if pause > 0 {
			time.Sleep(pause)
		}
	}
	return float64(spent.Nanoseconds()) / float64(n), float64(cpu.Nanoseconds()) / float64(n)
}

// summarize gives, per extension, the median over rounds for each event
// kind and the mean of those medians.
func summarize(names []string, events []benchEvent, samples map[string]map[string][]float64) map[string]map[string]float64 {
	out := map[string]map[string]float64{}
	for _, name := range names {
		out[name] = map[string]float64{}
		total := 0.0
		for _, e := range events {
			m := median(samples[name][e.typ])
			out[name][e.typ] = m
			total += m
		}
		out[name]["mean"] = total / float64(len(events))
	}
	return out
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// bench measures ns per handler call of the bridge, an empty extension and
// the naive map-marshalling bridge, interleaved in rounds, then the writer's
// throughput with the queue pre-filled.
func bench(d *driver) {
	n := envInt("KITHOST_CALLS", 2000)
	rounds := envInt("KITHOST_ROUNDS", 9)
	burst := envInt("KITHOST_BURST", 50)
	pause := time.Duration(envInt("KITHOST_PAUSE_US", 2000)) * time.Microsecond
	if os.Getenv("KITHOST_PAUSE_US") == "0" {
		pause = 0
	}
	names := []string{"empty", "bridge", "naive"}
	if v := os.Getenv("KITHOST_BENCH_EXTS"); v != "" {
		names = strings.Split(v, ",")
	}
	regs := map[string]*ext.Registry{}
	for _, name := range names {
		regs[name] = d.load(name)
	}
	ctx := d.kit.context()
	for _, name := range names {
		regs[name].Fire("session_start", ext.SessionStartEvent{}, ctx)
	}
	bridge := regs["bridge"]
	events := benchEvents()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	samples := map[string]map[string][]float64{}
	cpuSamples := map[string]map[string][]float64{}
	for _, name := range names {
		samples[name] = map[string][]float64{}
		cpuSamples[name] = map[string][]float64{}
	}
	// warm-up
	for _, e := range events {
		for _, name := range names {
			timeCalls(regs[name].Handlers[e.typ][0], e.ev, ctx, n/10+1, burst, pause)
		}
	}
	for round := 0; round < rounds; round++ {
		for _, e := range events {
			for k := range names {
				name := names[(k+round)%len(names)]
				h := regs[name].Handlers[e.typ][0]
				wall, cpu := timeCalls(h, e.ev, ctx, n, burst, pause)
				samples[name][e.typ] = append(samples[name][e.typ], wall)
				cpuSamples[name][e.typ] = append(cpuSamples[name][e.typ], cpu)
			}
		}
	}
	d.result["ns_per_call"] = summarize(names, events, samples)
	d.result["cpu_ns_per_call"] = summarize(names, events, cpuSamples)
	d.result["calls_per_sample"] = n
	d.result["rounds"] = rounds
	d.result["burst"] = burst
	d.result["pause_us"] = pause.Microseconds()
	d.result["fired_bridge_events"] = n * rounds * len(events)
	for _, name := range names {
		if name != "bridge" {
			regs[name].Fire("session_shutdown", ext.SessionShutdownEvent{}, ctx)
		}
	}
	if bridge == nil {
		return
	}
	d.result["drain_ms"] = shutdown(d, bridge).Milliseconds()

	// Writer throughput: hold the writer back (a flush interval longer than
	// the run, stallWriter), queue m events and time until session_shutdown
	// has flushed them.
	m := envInt("KITHOST_WRITER_EVENTS", 20000)
	d.kit.mu.Lock()
	d.kit.overrides["kit-otel-flush-ms"] = "600000"
	d.kit.overrides["kit-otel-queue-size"] = strconv.Itoa(m + 16)
	d.kit.mu.Unlock()
	bridge.Fire("session_start", ext.SessionStartEvent{}, ctx)
	stall := stallWriter(d, bridge)
	for i := 0; i < m; i++ {
		e := events[i%len(events)]
		bridge.Fire(e.typ, e.ev, ctx)
	}
	start := time.Now()
	close(stall)
	bridge.Fire("session_shutdown", ext.SessionShutdownEvent{}, ctx)
	elapsed := time.Since(start)
	d.result["writer_events"] = m
	d.result["writer_ms"] = float64(elapsed.Microseconds()) / 1000
	d.result["writer_events_per_s"] = float64(m) / elapsed.Seconds()
}
