// helm-render renders a Helm chart the way `helm template` does, for tests on machines without a helm
// binary. It uses only Debian's Go packages (GO111MODULE=off GOPATH=/usr/share/gocode): text/template,
// sprig (Helm's function library) and sigs.k8s.io/yaml (Helm's YAML), and adds Helm's own functions:
// include, tpl, required, fail, toYaml, fromYaml, toJson, fromJson, lookup (nothing, or objects from a
// file to imitate an upgrade), and the built-in objects .Values, .Release, .Chart, .Capabilities,
// .Template and .Files.
//
//	helm-render --chart DIR [--values FILE]... [--name NAME] [--namespace NS] [--upgrade]
//	            [--api-versions GROUP/VERSION]... [--kube-version v1.30.0] [--lookup FILE.json]
//	            [--notes FILE]
//
// Manifests go to stdout as YAML documents, each after a `# Source: <chart>/templates/<file>` line;
// NOTES.txt is written to --notes. Errors go to stderr with exit status 1.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"sigs.k8s.io/yaml"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

// Helm's recursion limit for include.
const recursionMaxNums = 1000

func main() {
	var valueFiles, apiVersions multi
	chartDir := flag.String("chart", "", "chart directory")
	name := flag.String("name", "release", "release name")
	namespace := flag.String("namespace", "default", "release namespace")
	upgrade := flag.Bool("upgrade", false, "render as an upgrade (.Release.IsUpgrade)")
	kubeVersion := flag.String("kube-version", "v1.30.0", "Kubernetes version for .Capabilities")
	lookupFile := flag.String("lookup", "", "JSON file: {\"<apiVersion>/<kind>/<namespace>/<name>\": object} for lookup")
	notesFile := flag.String("notes", "", "write the rendered NOTES.txt here")
	valuesOut := flag.String("values-out", "", "write the merged values (what Helm validates against values.schema.json) here as JSON")
	flag.Var(&valueFiles, "values", "values file (repeatable, later wins)")
	flag.Var(&apiVersions, "api-versions", "extra API version for .Capabilities.APIVersions (repeatable)")
	flag.Parse()
	if *chartDir == "" {
		fail(errors.New("--chart is required"))
	}
	out, notes, values, err := render(*chartDir, valueFiles, *name, *namespace, *upgrade, *kubeVersion, apiVersions, *lookupFile)
	if *valuesOut != "" && values != nil {
		data, _ := json.Marshal(values)
		if werr := os.WriteFile(*valuesOut, data, 0o644); werr != nil {
			fail(werr)
		}
	}
	if err != nil {
		fail(err)
	}
	if *notesFile != "" {
		if err := os.WriteFile(*notesFile, []byte(notes), 0o644); err != nil {
			fail(err)
		}
	}
	os.Stdout.WriteString(out)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "Error:", err)
	os.Exit(1)
}

func readYAMLMap(file string) (map[string]interface{}, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	m := map[string]interface{}{}
	// As Helm: YAML through JSON, so numbers are float64 (and print as Helm prints them).
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return m, nil
}

// coalesce merges user values over chart defaults as Helm does: maps recursively, a null removes the key.
func coalesce(dst, src map[string]interface{}) map[string]interface{} {
	for k, v := range src {
		if v == nil {
			delete(dst, k)
			continue
		}
		sv, srcIsMap := v.(map[string]interface{})
		dv, dstIsMap := dst[k].(map[string]interface{})
		if srcIsMap && dstIsMap {
			dst[k] = coalesce(dv, sv)
		} else {
			dst[k] = v
		}
	}
	return dst
}

// chartMetadata maps Chart.yaml's keys to the field names templates use (.Chart.AppVersion).
func chartMetadata(raw map[string]interface{}) map[string]interface{} {
	names := map[string]string{
		"apiVersion": "APIVersion", "name": "Name", "version": "Version", "appVersion": "AppVersion",
		"kubeVersion": "KubeVersion", "description": "Description", "type": "Type", "keywords": "Keywords",
		"home": "Home", "sources": "Sources", "maintainers": "Maintainers", "icon": "Icon",
		"annotations": "Annotations", "dependencies": "Dependencies", "deprecated": "Deprecated",
	}
	out := map[string]interface{}{}
	for k, v := range raw {
		if n, ok := names[k]; ok {
			out[n] = v
		}
	}
	return out
}

// Files is Helm's .Files: the chart's files outside templates/.
type Files map[string][]byte

func (f Files) GetBytes(name string) []byte { return f[name] }
func (f Files) Get(name string) string      { return string(f[name]) }
func (f Files) Glob(pattern string) Files {
	out := Files{}
	for name, data := range f {
		if ok, _ := path.Match(pattern, name); ok {
			out[name] = data
		}
	}
	return out
}
func (f Files) AsConfig() string {
	m := map[string]string{}
	for name, data := range f {
		m[path.Base(name)] = string(data)
	}
	return toYAML(m)
}
func (f Files) AsSecrets() string {
	m := map[string][]byte{}
	for name, data := range f {
		m[path.Base(name)] = data
	}
	return toYAML(m)
}
func (f Files) Lines(name string) []string {
	if f[name] == nil {
		return []string{}
	}
	return strings.Split(string(f[name]), "\n")
}

// VersionSet is .Capabilities.APIVersions.
type VersionSet []string

func (v VersionSet) Has(apiVersion string) bool {
	for _, x := range v {
		if x == apiVersion {
			return true
		}
	}
	return false
}

// The built-in API versions of a recent cluster (Helm's DefaultVersionSet, abridged to what charts ask).
var defaultAPIVersions = []string{
	"v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v1", "autoscaling/v2", "networking.k8s.io/v1",
	"rbac.authorization.k8s.io/v1", "storage.k8s.io/v1", "coordination.k8s.io/v1", "discovery.k8s.io/v1",
	"apps/v1/Deployment", "apps/v1/StatefulSet", "v1/Service", "v1/Secret", "v1/ConfigMap",
	"networking.k8s.io/v1/Ingress", "networking.k8s.io/v1/NetworkPolicy", "policy/v1/PodDisruptionBudget",
	"autoscaling/v2/HorizontalPodAutoscaler",
}

func toYAML(v interface{}) string {
	data, err := yaml.Marshal(v)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(data), "\n")
}

func fromYAML(str string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := yaml.Unmarshal([]byte(str), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func fromYAMLArray(str string) []interface{} {
	a := []interface{}{}
	if err := yaml.Unmarshal([]byte(str), &a); err != nil {
		a = []interface{}{err.Error()}
	}
	return a
}

func toJSON(v interface{}) string {
	data, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(data)
}

func fromJSON(str string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(str), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func fromJSONArray(str string) []interface{} {
	a := []interface{}{}
	if err := json.Unmarshal([]byte(str), &a); err != nil {
		a = []interface{}{err.Error()}
	}
	return a
}

func render(chartDir string, valueFiles []string, name, namespace string, upgrade bool, kubeVersion string, extraAPIVersions []string, lookupFile string) (string, string, map[string]interface{}, error) {
	chartYAML, err := readYAMLMap(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		return "", "", nil, err
	}
	chart := chartMetadata(chartYAML)
	chartName, _ := chart["Name"].(string)
	if chartName == "" {
		return "", "", nil, errors.New("Chart.yaml: name is required")
	}

	values := map[string]interface{}{}
	if _, err := os.Stat(filepath.Join(chartDir, "values.yaml")); err == nil {
		if values, err = readYAMLMap(filepath.Join(chartDir, "values.yaml")); err != nil {
			return "", "", nil, err
		}
	}
	for _, file := range valueFiles {
		user, err := readYAMLMap(file)
		if err != nil {
			return "", "", nil, err
		}
		values = coalesce(values, user)
	}

	lookups := map[string]map[string]interface{}{}
	if lookupFile != "" {
		data, err := os.ReadFile(lookupFile)
		if err != nil {
			return "", "", nil, err
		}
		if err := json.Unmarshal(data, &lookups); err != nil {
			return "", "", values, fmt.Errorf("%s: %w", lookupFile, err)
		}
	}

	// Templates and files, by chart-relative path with the chart name in front (Helm's template names).
	templates := map[string]string{}
	files := Files{}
	err = filepath.WalkDir(chartDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(chartDir, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel != "." && (strings.HasPrefix(d.Name(), ".") || rel == "charts") {
				return filepath.SkipDir
			}
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		switch {
		case strings.HasPrefix(rel, "templates/"):
			templates[chartName+"/"+rel] = string(data)
		case rel == "Chart.yaml" || rel == "values.yaml" || rel == "values.schema.json" || strings.HasPrefix(path.Base(rel), "."):
		default:
			files[rel] = data
		}
		return nil
	})
	if err != nil {
		return "", "", nil, err
	}

	major, minor := "1", "30"
	if m := regexp.MustCompile(`^v?(\d+)\.(\d+)`).FindStringSubmatch(kubeVersion); m != nil {
		major, minor = m[1], m[2]
	}
	top := map[string]interface{}{
		"Values": values,
		"Chart":  chart,
		"Release": map[string]interface{}{
			"Name": name, "Namespace": namespace, "IsUpgrade": upgrade, "IsInstall": !upgrade,
			"Revision": map[bool]int{false: 1, true: 2}[upgrade], "Service": "Helm",
		},
		"Capabilities": map[string]interface{}{
			"KubeVersion": map[string]interface{}{"Version": kubeVersion, "GitVersion": kubeVersion, "Major": major, "Minor": minor},
			"APIVersions": VersionSet(append(append([]string{}, defaultAPIVersions...), extraAPIVersions...)),
			"HelmVersion": map[string]interface{}{"Version": "v3.16.0"},
		},
		"Files": files,
	}

	t := template.New("gotpl")
	t.Option("missingkey=zero")
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	included := map[string]int{}
	for k, v := range map[string]interface{}{
		"toYaml": toYAML, "fromYaml": fromYAML, "fromYamlArray": fromYAMLArray,
		"toJson": toJSON, "fromJson": fromJSON, "fromJsonArray": fromJSONArray,
		"include": func(name string, data interface{}) (string, error) {
			if included[name] > recursionMaxNums {
				return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
			}
			included[name]++
			defer func() { included[name]-- }()
			var buf strings.Builder
			err := t.ExecuteTemplate(&buf, name, data)
			return buf.String(), err
		},
		"tpl": func(text string, data interface{}) (string, error) {
			clone, err := t.Clone()
			if err != nil {
				return "", err
			}
			parsed, err := clone.New("tpl").Parse(text)
			if err != nil {
				return "", fmt.Errorf("cannot parse template %q: %w", text, err)
			}
			var buf strings.Builder
			if err := parsed.Execute(&buf, data); err != nil {
				return "", fmt.Errorf("error during tpl function execution for %q: %w", text, err)
			}
			return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
		},
		"required": func(msg string, val interface{}) (interface{}, error) {
			if val == nil {
				return val, errors.New(msg)
			}
			if s, ok := val.(string); ok && s == "" {
				return val, errors.New(msg)
			}
			return val, nil
		},
		"fail": func(msg string) (string, error) { return "", errors.New(msg) },
		"lookup": func(apiVersion, kind, namespace, name string) (map[string]interface{}, error) {
			// As `helm template`: nothing, unless the test describes an existing object.
			if obj, ok := lookups[apiVersion+"/"+kind+"/"+namespace+"/"+name]; ok {
				return obj, nil
			}
			return map[string]interface{}{}, nil
		},
	} {
		funcs[k] = v
	}
	t.Funcs(funcs)

	names := make([]string, 0, len(templates))
	for n := range templates {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, err := t.New(n).Parse(templates[n]); err != nil {
			return "", "", values, cleanupError(err)
		}
	}

	var out, notes strings.Builder
	for _, n := range names {
		base := path.Base(n)
		if strings.HasPrefix(base, "_") {
			continue
		}
		data := map[string]interface{}{}
		for k, v := range top {
			data[k] = v
		}
		data["Template"] = map[string]interface{}{"Name": n, "BasePath": chartName + "/templates"}
		var buf bytes.Buffer
		if err := t.ExecuteTemplate(&buf, n, data); err != nil {
			return "", "", values, cleanupError(err)
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if base == "NOTES.txt" {
			notes.WriteString(text)
			continue
		}
		if strings.TrimSpace(text) == "" {
			continue
		}
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", n, strings.TrimRight(text, "\n"))
	}
	return out.String(), notes.String(), values, nil
}

// cleanupError shortens Go's template errors to Helm's "execution error at (file:line:col): message",
// naming the innermost fail or required, also when it was reached through include.
func cleanupError(err error) error {
	msg := err.Error()
	for _, marker := range []string{"error calling fail: ", "error calling required: "} {
		i := strings.LastIndex(msg, marker)
		if i < 0 {
			continue
		}
		loc := "unknown"
		if all := regexp.MustCompile(`template: ([^ ]+:\d+:\d+):`).FindAllStringSubmatch(msg[:i], -1); len(all) > 0 {
			loc = all[len(all)-1][1]
		}
		return fmt.Errorf("execution error at (%s): %s", loc, msg[i+len(marker):])
	}
	return err
}
