// statecompat writes and reads extension-state sidecars the way KIT does
// (encoding/json MarshalIndent / Unmarshal into map[string]string), so the
// Python tests can compare bytes with the real Go encoder.
//
//	statecompat write DIR < cases.json   cases.json: JSON array of objects;
//	                                     case i is written to DIR/case-<i>.json
//	statecompat read FILE...             one JSON line per file on stdout:
//	                                     {"state": {...}} or {"error": "..."}
//	statecompat version                  prints runtime.Version()
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

func die(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

func writeCases(dir string) {
	var cases []map[string]string
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		die(err)
	}
	for i, m := range cases {
		if m == nil {
			m = map[string]string{}
		}
		data, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			die(err)
		}
		path := filepath.Join(dir, fmt.Sprintf("case-%d.json", i))
		if err := os.WriteFile(path+".tmp", data, 0o644); err != nil {
			die(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			die(err)
		}
	}
}

func readFiles(paths []string) {
	out := json.NewEncoder(os.Stdout)
	for _, p := range paths {
		res := map[string]interface{}{}
		data, err := os.ReadFile(p)
		var m map[string]string
		if err == nil && len(data) > 0 {
			err = json.Unmarshal(data, &m)
		}
		if err != nil {
			res["error"] = err.Error()
		} else {
			if m == nil {
				m = map[string]string{}
			}
			res["state"] = m
		}
		if err := out.Encode(res); err != nil {
			die(err)
		}
	}
}

func main() {
	args := os.Args[1:]
	// Under "yaegi run main.go ARGS" os.Args still holds "run main.go".
	for i, a := range args {
		if strings.HasSuffix(a, ".go") {
			args = args[i+1:]
			break
		}
	}
	if len(args) < 1 {
		die(fmt.Errorf("usage: statecompat write DIR | read FILE... | version"))
	}
	switch args[0] {
	case "write":
		writeCases(args[1])
	case "read":
		readFiles(args[1:])
	case "version":
		fmt.Println(runtime.Version())
	default:
		die(fmt.Errorf("unknown command %q", args[0]))
	}
}
