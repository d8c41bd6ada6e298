package pvesim

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Schema is a loaded PVE API schema (the JSON array from pve-docs
// api-viewer/apidata.js). It is immutable after loading and safe to share
// between servers and goroutines.
type Schema struct {
	// Name is a label such as "pve9", used in messages.
	Name    string
	methods map[string]map[string]*Method // path template -> HTTP method
}

// Method is one endpoint of the schema.
type Method struct {
	Path       string
	HTTPMethod string
	Name       string
	// Params are the declared parameters; indexed ones ("net[n]") are kept
	// under their schema name and matched through indexed.
	Params               map[string]*Prop
	indexed              map[string]indexedProp // prefix -> prop
	AdditionalProperties bool
	Permissions          json.RawMessage
	AllowToken           bool
	Returns              *Prop
}

type indexedProp struct {
	prop *Prop
	max  int // highest valid index
}

// Prop is a parameter or property schema in PVE's JSONSchema dialect.
type Prop struct {
	Type        string
	Format      string           // named format, e.g. "pve-vmid" or "address-list"
	FormatProps map[string]*Prop // inline property-string format (sub-keys)
	Optional    bool
	Enum        []string
	Pattern     string
	re          *regexp.Regexp
	Minimum     *float64
	Maximum     *float64
	MinLength   *int
	MaxLength   *int
	DefaultKey  bool
	Alias       string
	KeyAlias    string
	Requires    string
	Description string
	Properties  map[string]*Prop
	Items       *Prop
}

// ErrSchemaNotFound is returned by FindSchema when the fixture is absent.
var ErrSchemaNotFound = errors.New("PVE API schema fixture not found")

// FindSchema locates pve<major>-apischema.json under ../shared/fixtures/proxmox
// relative to the module root (the nearest directory holding go.mod, starting
// at the working directory). It returns the path it looked at and
// ErrSchemaNotFound when the file does not exist.
func FindSchema(major int) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory: %w", ErrSchemaNotFound)
		}
		dir = parent
	}
	p := filepath.Join(filepath.Dir(dir), "shared", "fixtures", "proxmox", fmt.Sprintf("pve%d-apischema.json", major))
	if _, err := os.Stat(p); err != nil {
		return p, fmt.Errorf("%s: %w", p, ErrSchemaNotFound)
	}
	return p, nil
}

// LoadSchema reads and indexes a schema file.
func LoadSchema(path string) (*Schema, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	name := strings.TrimSuffix(filepath.Base(path), "-apischema.json")
	return ParseSchema(name, raw)
}

// ParseSchema indexes the JSON array of an apidata.js dump.
func ParseSchema(name string, raw []byte) (*Schema, error) {
	var tree []any
	if err := json.Unmarshal(raw, &tree); err != nil {
		return nil, fmt.Errorf("schema %s: %w", name, err)
	}
	s := &Schema{Name: name, methods: map[string]map[string]*Method{}}
	var walk func(n map[string]any) error
	walk = func(n map[string]any) error {
		path, _ := n["path"].(string)
		if info, ok := n["info"].(map[string]any); ok {
			for hm, mi := range info {
				m, err := convertMethod(path, hm, mi.(map[string]any))
				if err != nil {
					return fmt.Errorf("%s %s: %w", hm, path, err)
				}
				if s.methods[path] == nil {
					s.methods[path] = map[string]*Method{}
				}
				s.methods[path][hm] = m
			}
		}
		children, _ := n["children"].([]any)
		for _, c := range children {
			if err := walk(c.(map[string]any)); err != nil {
				return err
			}
		}
		return nil
	}
	for _, n := range tree {
		m, ok := n.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("schema %s: unexpected top-level element", name)
		}
		if err := walk(m); err != nil {
			return nil, fmt.Errorf("schema %s: %w", name, err)
		}
	}
	if len(s.methods) == 0 {
		return nil, fmt.Errorf("schema %s: no paths", name)
	}
	return s, nil
}

// Method returns the schema of an endpoint given its path template
// ("/nodes/{node}/qemu") and HTTP method.
func (s *Schema) Method(template, httpMethod string) *Method {
	return s.methods[template][httpMethod]
}

// HasPath reports whether the template exists with any method.
func (s *Schema) HasPath(template string) bool { return len(s.methods[template]) > 0 }

// Paths lists all path templates (sorted).
func (s *Schema) Paths() []string {
	out := make([]string, 0, len(s.methods))
	for p := range s.methods {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

var rxIndexRange = regexp.MustCompile(`\(n is 0 to (\d+)\)`)

// defaultIndexMax holds qemu-server's MAX_* constants for indexed keys whose
// description does not state the range.
var defaultIndexMax = map[string]int{
	"net": 31, "ipconfig": 31, "unused": 255, "serial": 3, "parallel": 2,
	"usb": 13, "hostpci": 15, "numa": 7, "virtiofs": 9, "ide": 3, "sata": 5,
	"virtio": 15, "scsi": 30, "mp": 255, "dev": 255, "link": 7,
}

func convertMethod(path, hm string, mi map[string]any) (*Method, error) {
	m := &Method{Path: path, HTTPMethod: hm, Params: map[string]*Prop{}, indexed: map[string]indexedProp{}}
	m.Name, _ = mi["name"].(string)
	m.AllowToken = truthy(mi["allowtoken"], true)
	if p, ok := mi["permissions"]; ok {
		m.Permissions, _ = json.Marshal(p)
	}
	if params, ok := mi["parameters"].(map[string]any); ok {
		m.AdditionalProperties = truthy(params["additionalProperties"], false)
		props, _ := params["properties"].(map[string]any)
		for k, v := range props {
			pm, ok := v.(map[string]any)
			if !ok {
				continue
			}
			p := convertProp(pm)
			if strings.HasSuffix(k, "[n]") {
				prefix := strings.TrimSuffix(k, "[n]")
				max := 255
				if d, ok := defaultIndexMax[prefix]; ok {
					max = d
				}
				if mm := rxIndexRange.FindStringSubmatch(p.Description); mm != nil {
					max, _ = strconv.Atoi(mm[1])
				}
				m.indexed[prefix] = indexedProp{prop: p, max: max}
			}
			m.Params[k] = p
		}
	}
	if r, ok := mi["returns"].(map[string]any); ok {
		m.Returns = convertProp(r)
	}
	return m, nil
}

func truthy(v any, def bool) bool {
	switch t := v.(type) {
	case nil:
		return def
	case bool:
		return t
	case float64:
		return t != 0
	case string:
		return t == "1" || t == "true"
	}
	return def
}

func number(v any) *float64 {
	switch t := v.(type) {
	case float64:
		return &t
	case string:
		f, err := strconv.ParseFloat(t, 64)
		if err != nil {
			return nil
		}
		return &f
	}
	return nil
}

func convertProp(pm map[string]any) *Prop {
	p := &Prop{}
	switch t := pm["type"].(type) {
	case string:
		p.Type = t
	}
	switch f := pm["format"].(type) {
	case string:
		p.Format = f
	case map[string]any:
		p.FormatProps = map[string]*Prop{}
		for k, v := range f {
			if sm, ok := v.(map[string]any); ok {
				p.FormatProps[k] = convertProp(sm)
			}
		}
	}
	p.Optional = truthy(pm["optional"], false)
	if e, ok := pm["enum"].([]any); ok {
		for _, v := range e {
			p.Enum = append(p.Enum, fmt.Sprint(v))
		}
	}
	if s, ok := pm["pattern"].(string); ok {
		p.Pattern = s
		// Perl matches m/^$pattern$/; RE2 lacks a few Perl constructs, in
		// which case the pattern is not enforced (see Prop.re == nil).
		p.re, _ = regexp.Compile("^" + s + "$")
	}
	p.Minimum = number(pm["minimum"])
	p.Maximum = number(pm["maximum"])
	if n := number(pm["minLength"]); n != nil {
		v := int(*n)
		p.MinLength = &v
	}
	if n := number(pm["maxLength"]); n != nil {
		v := int(*n)
		p.MaxLength = &v
	}
	p.DefaultKey = truthy(pm["default_key"], false)
	p.Alias, _ = pm["alias"].(string)
	p.KeyAlias, _ = pm["keyAlias"].(string)
	p.Requires, _ = pm["requires"].(string)
	p.Description, _ = pm["description"].(string)
	if props, ok := pm["properties"].(map[string]any); ok {
		p.Properties = map[string]*Prop{}
		for k, v := range props {
			if sm, ok := v.(map[string]any); ok {
				p.Properties[k] = convertProp(sm)
			}
		}
	}
	if it, ok := pm["items"].(map[string]any); ok {
		p.Items = convertProp(it)
	}
	return p
}

var rxIndexedName = regexp.MustCompile(`^([a-z][a-z_-]*?)(\d+)$`)

// Param returns the schema of a concrete parameter name, resolving indexed
// names such as "net0" or "scsi30".
func (m *Method) Param(name string) *Prop {
	if p, ok := m.Params[name]; ok {
		return p
	}
	if mm := rxIndexedName.FindStringSubmatch(name); mm != nil {
		if ip, ok := m.indexed[mm[1]]; ok {
			idx, err := strconv.Atoi(mm[2])
			if err == nil && idx <= ip.max && (mm[2] == "0" || !strings.HasPrefix(mm[2], "0")) {
				return ip.prop
			}
		}
	}
	return nil
}

// ReturnProp returns the schema of a property of an object-typed return
// value (e.g. a config key of GET .../config), resolving indexed names.
func (m *Method) ReturnProp(name string) *Prop {
	if m.Returns == nil || m.Returns.Properties == nil {
		return nil
	}
	if p, ok := m.Returns.Properties[name]; ok {
		return p
	}
	if mm := rxIndexedName.FindStringSubmatch(name); mm != nil {
		if p, ok := m.Returns.Properties[mm[1]+"[n]"]; ok {
			return p
		}
	}
	return nil
}
