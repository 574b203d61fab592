//go:build yaegihost
// +build yaegihost

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"

	"github.com/traefik/yaegi/interp"
	"github.com/traefik/yaegi/stdlib"
	"github.com/traefik/yaegi/stdlib/unrestricted"

	"kit/ext"
)

// Extensions are interpreted by the yaegi library the way KIT's loader does
// it: a fresh interpreter per extension (and per reload) with the standard
// library, the unrestricted symbols and the "kit/ext" export table, the
// source evaluated whole, Init taken out as a func(ext.API).
const loaderName = "yaegi-lib"

func loadExtension(name string, api ext.API) error {
	dir := os.Getenv("KITHOST_EXTDIR")
	src, err := os.ReadFile(filepath.Join(dir, name+".go"))
	if err != nil {
		return err
	}
	i := interp.New(interp.Options{Env: os.Environ()})
	if err := i.Use(stdlib.Symbols); err != nil {
		return err
	}
	if err := i.Use(unrestricted.Symbols); err != nil {
		return err
	}
	if err := i.Use(symbols()); err != nil {
		return err
	}
	if err := evalSource(i, string(src)); err != nil {
		return fmt.Errorf("evaluating source: %w", err)
	}
	v, err := i.Eval("Init")
	if err != nil {
		return fmt.Errorf("no Init function: %w", err)
	}
	initFn, ok := v.Interface().(func(ext.API))
	if !ok {
		return fmt.Errorf("Init has type %T, want func(ext.API)", v.Interface())
	}
	return callInit(initFn, api)
}

// directScenario: none in this mode (the bridge is interpreted).
func directScenario(d *driver, scenario string) bool { return false }

func evalSource(i *interp.Interpreter, src string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	_, err = i.Eval(src)
	return err
}

func callInit(initFn func(ext.API), api ext.API) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in Init: %v", r)
		}
	}()
	initFn(api)
	return nil
}

// symbols is the "kit/ext" export table: every exported type of the
// stand-in, registered by the nil-pointer convention KIT uses.
func symbols() interp.Exports {
	m := map[string]reflect.Value{}
	for _, p := range append(commonTypes(), variantTypes()...) {
		m[reflect.TypeOf(p).Elem().Name()] = reflect.ValueOf(p)
	}
	return interp.Exports{"kit/ext/ext": m}
}

func commonTypes() []interface{} {
	return []interface{}{
		(*ext.API)(nil), (*ext.Context)(nil), (*ext.OptionDef)(nil), (*ext.ToolDef)(nil),
		(*ext.ToolContext)(nil), (*ext.CommandDef)(nil), (*ext.PrintBlockOpts)(nil),
		(*ext.SessionMessage)(nil), (*ext.ExtensionEntry)(nil), (*ext.SessionUsage)(nil),
		(*ext.ContextMessage)(nil), (*ext.ContextStats)(nil), (*ext.CompactConfig)(nil),
		(*ext.FilePart)(nil),
		(*ext.ToolCallEvent)(nil), (*ext.ToolCallResult)(nil),
		(*ext.ToolCallInputStartEvent)(nil), (*ext.ToolCallInputDeltaEvent)(nil),
		(*ext.ToolCallInputEndEvent)(nil), (*ext.ToolExecutionStartEvent)(nil),
		(*ext.ToolExecutionEndEvent)(nil), (*ext.ToolOutputEvent)(nil),
		(*ext.ToolResultEvent)(nil), (*ext.ToolResultResult)(nil),
		(*ext.InputEvent)(nil), (*ext.InputResult)(nil),
		(*ext.BeforeAgentStartEvent)(nil), (*ext.BeforeAgentStartResult)(nil),
		(*ext.AgentStartEvent)(nil), (*ext.AgentEndEvent)(nil),
		(*ext.MessageStartEvent)(nil), (*ext.MessageUpdateEvent)(nil), (*ext.MessageEndEvent)(nil),
		(*ext.SessionStartEvent)(nil), (*ext.SessionShutdownEvent)(nil), (*ext.ModelChangeEvent)(nil),
		(*ext.ContextPrepareEvent)(nil), (*ext.ContextPrepareResult)(nil),
		(*ext.BeforeForkEvent)(nil), (*ext.BeforeForkResult)(nil),
		(*ext.BeforeSessionSwitchEvent)(nil), (*ext.BeforeSessionSwitchResult)(nil),
		(*ext.BeforeCompactEvent)(nil), (*ext.BeforeCompactResult)(nil),
		(*ext.SubagentStartEvent)(nil), (*ext.SubagentChunkEvent)(nil), (*ext.SubagentEndEvent)(nil),
		(*ext.StepStartEvent)(nil), (*ext.StepFinishEvent)(nil), (*ext.ReasoningStartEvent)(nil),
		(*ext.WarningsEvent)(nil), (*ext.SourceEvent)(nil), (*ext.ErrorEvent)(nil), (*ext.RetryEvent)(nil),
		(*ext.PrepareStepEvent)(nil), (*ext.PrepareStepResult)(nil), (*ext.LLMUsageEvent)(nil),
	}
}
