package pvesim

import (
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Value is one request parameter as PVE's validator sees it: a scalar string
// (form data, query, JSON string or number) or a JSON boolean / reference.
type Value struct {
	S string
	// Ref is set for JSON values that are Perl references: "JSON::PP::Boolean"
	// for true/false, "HASH" for objects, "ARRAY" for arrays.
	Ref string
}

// Params are the merged URI, query and body parameters of a request.
type Params map[string]Value

// Get returns the scalar text of a parameter ("" when absent).
func (p Params) Get(k string) string { return p[k].S }

// Has reports whether the parameter is present.
func (p Params) Has(k string) bool { _, ok := p[k]; return ok }

// Bool interprets a validated boolean parameter.
func (p Params) Bool(k string) bool {
	v, ok := p[k]
	return ok && (v.S == "1" || v.S == "true")
}

// errorMap collects per-parameter messages the way PVE::JSONSchema::add_error
// does (several messages for one path are joined with a literal "\n").
type errorMap map[string]string

func (e errorMap) add(path, msg string) {
	if path == "" {
		path = "_root"
	}
	if old, ok := e[path]; ok {
		e[path] = old + `\n` + msg
		return
	}
	e[path] = msg
}

// Validate checks params against the method schema exactly like
// PVE::JSONSchema::validate with additionalProperties from the schema. It
// returns the errors map (nil when valid).
func (m *Method) Validate(params Params) map[string]string {
	errs := errorMap{}
	names := make([]string, 0, len(m.Params))
	for k := range m.Params {
		if !strings.HasSuffix(k, "[n]") {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, k := range names {
		v, ok := params[k]
		checkProp(v, ok, m.Params[k], k, errs)
	}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p := m.Param(k)
		if p != nil {
			if _, direct := m.Params[k]; !direct {
				checkProp(params[k], true, p, k, errs)
			}
			if p.Requires != "" {
				if _, ok := params[p.Requires]; !ok {
					errs.add(p.Requires, "missing property - '"+k+"' requires this property")
				}
			}
			continue
		}
		if !m.AdditionalProperties {
			errs.add(k, "property is not defined in schema and the schema does not allow additional properties")
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

var (
	rxInteger = regexp.MustCompile(`^[+-]?\d+$`)
	rxNumber  = regexp.MustCompile(`^[+-]?(\d+\.\d+|\d+\.|\.\d+|\d+)([eE][+-]?\d+)?$`)
)

func fmtNum(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// checkProp mirrors PVE::JSONSchema::check_prop for scalar values.
func checkProp(v Value, present bool, p *Prop, path string, errs errorMap) {
	if !present {
		if !p.Optional && p.Alias == "" {
			errs.add(path, "property is missing and it is not optional")
		}
		return
	}
	if !checkType(path, p.Type, v, errs) {
		return
	}
	if v.Ref != "" {
		return // JSON boolean accepted for a boolean: nothing else to check
	}
	s := v.S
	if p.FormatProps != nil {
		if _, msg := parsePropertyString(p.FormatProps, s, path); msg != "" {
			errs.add(path, "invalid format - "+msg)
			return
		}
	} else if p.Format != "" {
		if msg := checkFormat(p.Format, s, path); msg != "" {
			errs.add(path, "invalid format - "+msg)
			return
		}
	}
	if p.Pattern != "" && p.re != nil && !p.re.MatchString(s) {
		errs.add(path, "value does not match the regex pattern")
		return
	}
	if p.MaxLength != nil && len([]rune(s)) > *p.MaxLength {
		errs.add(path, "value may only be "+strconv.Itoa(*p.MaxLength)+" characters long")
		return
	}
	if p.MinLength != nil && len([]rune(s)) < *p.MinLength {
		errs.add(path, "value must be at least "+strconv.Itoa(*p.MinLength)+" characters long")
		return
	}
	if rxNumber.MatchString(s) {
		f, _ := strconv.ParseFloat(s, 64)
		if p.Maximum != nil && f > *p.Maximum {
			errs.add(path, "value must have a maximum value of "+fmtNum(*p.Maximum))
			return
		}
		if p.Minimum != nil && f < *p.Minimum {
			errs.add(path, "value must have a minimum value of "+fmtNum(*p.Minimum))
			return
		}
	}
	if len(p.Enum) > 0 {
		for _, e := range p.Enum {
			if e == s {
				return
			}
		}
		errs.add(path, "value '"+s+"' does not have a value in the enumeration '"+strings.Join(p.Enum, ", ")+"'")
	}
}

func checkType(path, typ string, v Value, errs errorMap) bool {
	if typ == "" || typ == "any" {
		return true
	}
	if v.Ref != "" {
		if typ == "boolean" && v.Ref == "JSON::PP::Boolean" {
			return true
		}
		if (typ == "object" && v.Ref == "HASH") || (typ == "array" && v.Ref == "ARRAY") {
			return true
		}
		errs.add(path, "type check ('"+typ+"') failed - got "+v.Ref)
		return false
	}
	switch typ {
	case "string":
		return true
	case "boolean":
		if v.S == "1" || v.S == "0" {
			return true
		}
	case "integer":
		if rxInteger.MatchString(v.S) {
			return true
		}
	case "number":
		if rxNumber.MatchString(v.S) {
			return true
		}
	case "array", "object":
		errs.add(path, "type check ('"+typ+"') failed")
		return false
	default:
		return true
	}
	errs.add(path, "type check ('"+typ+"') failed - got '"+v.S+"'")
	return false
}

// parseBoolean mirrors PVE::JSONSchema::parse_boolean.
func parseBoolean(s string) (string, bool) {
	switch strings.ToLower(s) {
	case "1", "on", "yes", "true":
		return "1", true
	case "0", "off", "no", "false":
		return "0", true
	}
	return s, false
}

// parsePropertyString mirrors PVE::JSONSchema::parse_property_string with
// additional properties disallowed. It returns the parsed map and, on
// failure, the die message PVE would produce (including the trailing "\n").
func parsePropertyString(format map[string]*Prop, data, path string) (map[string]string, string) {
	res := map[string]string{}
	defaultKey := ""
	for _, part := range strings.Split(data, ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		if i := strings.IndexByte(part, '='); i > 0 && i < len(part)-1 {
			k, v := part[:i], part[i+1:]
			if _, dup := res[k]; dup {
				return nil, "duplicate key in comma-separated list property: " + k + "\n"
			}
			schema := format[k]
			if schema != nil && schema.Alias != "" {
				if schema.KeyAlias != "" {
					if _, dup := res[schema.KeyAlias]; dup {
						return nil, "key alias '" + schema.KeyAlias + "' is already defined\n"
					}
					res[schema.KeyAlias] = k
				}
				k = schema.Alias
				schema = format[k]
			}
			if schema == nil {
				return nil, "invalid key in comma-separated list property: " + k + "\n"
			}
			if schema.Type == "boolean" {
				v, _ = parseBoolean(v)
			}
			res[k] = v
		} else if !strings.Contains(part, "=") {
			if defaultKey != "" {
				return nil, "duplicate key in comma-separated list property: " + defaultKey + "\n"
			}
			keys := make([]string, 0, len(format))
			for k := range format {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if format[k].DefaultKey {
					defaultKey = k
					if _, ok := res[k]; ok {
						return nil, "duplicate key in comma-separated list property: " + k + "\n"
					}
					res[k] = part
					break
				}
			}
			if defaultKey == "" {
				return nil, "value without key, but schema does not define a default key\n"
			}
		} else {
			return nil, "missing key in comma-separated list property\n"
		}
	}
	errs := errorMap{}
	keys := make([]string, 0, len(format))
	for k := range format {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	sub := func(k string) string {
		if path == "" {
			return k
		}
		return path + "." + k
	}
	for _, k := range keys {
		v, ok := res[k]
		checkProp(Value{S: v}, ok, format[k], sub(k), errs)
	}
	for _, k := range keys {
		if _, ok := res[k]; !ok {
			continue
		}
		if r := format[k].Requires; r != "" {
			if _, ok := res[r]; !ok {
				errs.add(sub(r), "missing property - '"+sub(k)+"' requires this property")
			}
		}
	}
	if len(errs) > 0 {
		return nil, formatErrorMessage(errs)
	}
	return res, ""
}

// formatErrorMessage renders an exception "format error\n" with its errors
// the way PVE::Exception::stringify does (one "path: msg" line per error).
func formatErrorMessage(errs errorMap) string {
	keys := make([]string, 0, len(errs))
	for k := range errs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("format error\n")
	for _, k := range keys {
		b.WriteString(k + ": " + errs[k] + "\n")
	}
	return b.String()
}

// splitList mirrors PVE::Tools::split_list.
func splitList(s string) []string {
	if strings.Contains(s, "\x00") {
		return strings.Split(s, "\x00")
	}
	s = strings.NewReplacer(",", " ", ";", " ").Replace(s)
	return strings.Fields(s)
}
