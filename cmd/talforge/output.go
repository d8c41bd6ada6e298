package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// outputOptions is the --output flag, and the one place where a command's result becomes text
// for people or the same structure as JSON for scripts. Progress never goes to the result's
// stream when it is JSON: stdout stays one parseable document.
type outputOptions struct {
	format string
}

func (o *outputOptions) addFlag(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&o.format, "output", "o", "text", "text or json (the same result, for scripts)")
}

func (o *outputOptions) validate() error {
	if o.format != "text" && o.format != "json" {
		return &flagError{fmt.Errorf("--output must be text or json, got %q", o.format)}
	}

	return nil
}

func (o *outputOptions) json() bool { return o.format == "json" }

// progress is where progress goes: w for text, errOut when w carries JSON.
func (o *outputOptions) progress(w, errOut io.Writer) io.Writer {
	if o.json() {
		return errOut
	}

	return w
}

// write renders v on w: as indented JSON, or as text by text.
func (o *outputOptions) write(w io.Writer, v any, text func(io.Writer)) error {
	if !o.json() {
		text(w)

		return nil
	}

	return writeJSON(w, v)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")

	return enc.Encode(v)
}
