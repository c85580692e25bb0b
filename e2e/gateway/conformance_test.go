// Package gateway runs the Gateway API conformance suite (sigs.k8s.io/gateway-api/conformance,
// its code unmodified) against lockstep: GatewayClass `lockstep`, profiles GATEWAY-HTTP and
// GATEWAY-GRPC, the features the class's status.supportedFeatures claims.
// e2e/gateway/conformance.sh compiles this test once (e2e/gateway/build.sh) and runs it on the
// one-node cluster; see docs/gateway.md, "Conformance".
//
// The claimed features have one list, core/src/gateway/features.rs, which the operator writes
// into the status.supportedFeatures of the GatewayClass it accepts. This wrapper keeps no copy:
// without --supported-features, --all-features, --exempt-features and --run-test, the suite
// infers the features from that status itself (NewConformanceTestSuite in
// conformance/utils/suite/suite.go: shouldInferSupportedFeatures, then
// fetchGatewayClassSupportedFeatures), and the core features of the profiles are added as
// always. With --run-test or --exempt-features the suite does not infer, so the wrapper reads
// the same status and passes it as --supported-features would.
//
// Every flag of the suite (conformance/utils/flags) still works and wins over the defaults
// set here (--run-test, --skip-tests, --supported-features, --timeout-config-overrides,
// --report-output, --version...). The report gets lockstep's notes as YAML comments at its
// top: the ConformanceReport type of v1.6.3 has no field for them.
package gateway_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/gateway-api/conformance"
	confv1 "sigs.k8s.io/gateway-api/conformance/apis/v1"
	conformanceconfig "sigs.k8s.io/gateway-api/conformance/utils/config"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"
	"sigs.k8s.io/gateway-api/pkg/features"
	"sigs.k8s.io/yaml"
)

var profiles = []suite.ConformanceProfileName{
	suite.GatewayHTTPConformanceProfileName,
	suite.GatewayGRPCConformanceProfileName,
}

// skipped holds the tests lockstep does not run, each with the reason (none so far).
var skipped = map[string]string{}

// timeouts are the suite's timeouts raised for the one-node cluster on a shared 2-core
// machine (a change goes through the operator, the barrier over every replica of the
// Gateway's fleet and kube-proxy while other builds run), in the form of the suite's
// --timeout-config-overrides (seconds). They are listed in the report's notes.
const timeouts = "MaxTimeToConsistency:90;HTTPRouteMustHaveCondition:120;RouteMustHaveParents:120;" +
	"GatewayStatusMustHaveListeners:120;GatewayListenersMustHaveConditions:120;" +
	"LatestObservedGenerationSet:120;DefaultTestTimeout:120"

// images says where the images of the suite's base manifests come from: no registry is
// reachable, so each is built on the machine (e2e/gateway/images.sh) and imported into the
// node's containerd under the upstream name; the manifests run unmodified.
var images = []string{
	"registry.k8s.io/gateway-api/echo-basic:v1.5.1 and :v1.6.0-dev.3: both built from conformance/echo-basic of sigs.k8s.io/gateway-api/conformance v1.6.3 (CGO_ENABLED=0, dependency versions as e2e/gateway/go.mod resolves them, not the .go.mod the upstream Dockerfile uses), on an empty base with the CA bundle, user 65532, ENTRYPOINT /echo-basic as docker/Dockerfile.echo-basic; not the published images of those tags",
	"registry.k8s.io/coredns/coredns:v1.12.2: built from github.com/coredns/coredns v1.12.2 (CGO_ENABLED=0, its own go.sum), /coredns with file capability cap_net_bind_service, user 65532, as its Dockerfile",
	"base manifests: conformance/base/manifests.yaml of the module, unmodified",
}

// The addresses GatewayStaticAddresses asks a Gateway for, which the suite cannot know: a
// static address becomes the fleet Service's cluster IP, so a usable one is a free address
// of the node's Service range (10.0.0.0/24, e2e/node/up.sh) in its lower sixteenth, which the
// apiserver keeps for static picks (it hands out dynamic ones from the rest first), and an
// unusable one lies outside the range (192.0.2.1, TEST-NET-1), which the apiserver refuses.
const (
	usableAddress   = "10.0.0.14"
	unusableAddress = "192.0.2.1"
)

func TestConformance(t *testing.T) {
	opts := conformance.DefaultOptions(t)
	given := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { given[f.Name] = true })

	if !given["gateway-class"] {
		opts.GatewayClassName = "lockstep"
	}
	if !given["conformance-profiles"] {
		opts.ConformanceProfiles = profiles
	}
	featuresNote, err := chooseFeatures(&opts, given)
	if err != nil {
		t.Fatal(err)
	}
	if !given["skip-tests"] {
		for name := range skipped {
			opts.SkipTests = append(opts.SkipTests, name)
		}
		sort.Strings(opts.SkipTests)
	}
	if !given["timeout-config-overrides"] {
		conformanceconfig.ParseTimeoutOverrides(&opts.TimeoutConfig, timeouts)
	}
	ipAddress := gatewayv1.IPAddressType
	addressNote := ""
	if !given["usable-address"] && !given["unusable-address"] {
		opts.UsableNetworkAddresses = []gatewayv1.GatewaySpecAddress{{Type: &ipAddress, Value: usableAddress}}
		opts.UnusableNetworkAddresses = []gatewayv1.GatewaySpecAddress{{Type: &ipAddress, Value: unusableAddress}}
		addressNote = fmt.Sprintf("GatewayStaticAddresses: usable address %s (a free cluster IP of the node's Service range 10.0.0.0/24), unusable address %s (outside it)", usableAddress, unusableAddress)
	}
	impl := &opts.Implementation
	if impl.Organization == "" {
		impl.Organization = "lockstep-dev"
	}
	if impl.Project == "" {
		impl.Project = "lockstep"
	}
	if impl.URL == "" {
		impl.URL = "https://github.com/lockstep-dev/lockstep"
	}
	if len(impl.Contact) == 0 {
		impl.Contact = []string{"https://github.com/lockstep-dev/lockstep"}
	}
	if impl.Version == "" {
		impl.Version = "unknown (pass --version)"
	}

	notes := []string{featuresNote}
	if addressNote != "" {
		notes = append(notes, addressNote)
	}
	for _, name := range opts.SkipTests {
		reason := skipped[name]
		if reason == "" {
			reason = "--skip-tests"
		}
		notes = append(notes, fmt.Sprintf("skipped %s: %s", name, reason))
	}
	if opts.RunTest != "" {
		notes = append(notes, fmt.Sprintf("only %s was run (--run-test)", opts.RunTest))
	}
	if given["timeout-config-overrides"] {
		notes = append(notes, "timeouts: --timeout-config-overrides as given")
	} else {
		notes = append(notes, "timeouts raised for a one-node cluster on a shared 2-core machine (seconds): "+timeouts)
	}
	notes = append(notes, images...)
	// What the harness decided around the suite (conformance.sh), one note a line.
	for _, line := range strings.Split(os.Getenv("LOCKSTEP_CONFORMANCE_NOTES"), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			notes = append(notes, line)
		}
	}

	// Registered before the suite's own cleanup, which writes the report, so it runs after it
	// (cleanups run last-in first-out).
	if path := opts.ReportOutputPath; path != "" {
		t.Cleanup(func() {
			if err := prependNotes(path, notes); err != nil {
				t.Errorf("adding the notes to %s: %v", path, err)
			}
			summary(t, path)
		})
	}
	conformance.RunConformanceWithOptions(t, opts)
}

// chooseFeatures leaves opts.SupportedFeatures empty for the suite to infer them from the
// GatewayClass's status, unless a flag says otherwise; it returns the report's note on them.
func chooseFeatures(opts *suite.ConformanceOptions, given map[string]bool) (string, error) {
	if given["supported-features"] || given["all-features"] {
		return "supported features: --supported-features/--all-features as given, not the GatewayClass's status", nil
	}
	claimed, err := classFeatures(*opts)
	if err != nil {
		return "", fmt.Errorf("reading the supported features of GatewayClass %s: %w", opts.GatewayClassName, err)
	}
	how := "the suite infers them from there"
	if opts.RunTest != "" || len(opts.ExemptFeatures) > 0 {
		// The suite infers nothing with either flag (shouldInferSupportedFeatures).
		opts.SupportedFeatures = claimed
		how = "read by the wrapper, as the suite infers nothing with --run-test or --exempt-features"
	}
	return fmt.Sprintf("supported features: %s, from GatewayClass %s status.supportedFeatures "+
		"(written by the operator from core/src/gateway/features.rs; %s)",
		joinFeatures(claimed), opts.GatewayClassName, how), nil
}

// classFeatures is the GatewayClass's status.supportedFeatures, as the suite reads it
// (fetchGatewayClassSupportedFeatures); an empty list is an error there too.
func classFeatures(opts suite.ConformanceOptions) ([]features.FeatureName, error) {
	class := &gatewayv1.GatewayClass{}
	if err := opts.Client.Get(context.TODO(), client.ObjectKey{Name: opts.GatewayClassName}, class); err != nil {
		return nil, err
	}
	var names []features.FeatureName
	for _, f := range class.Status.SupportedFeatures {
		names = append(names, features.FeatureName(f.Name))
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("status.supportedFeatures is empty: is the class accepted by lockstep's operator?")
	}
	return names, nil
}

func joinFeatures(names []features.FeatureName) string {
	s := make([]string, len(names))
	for i, n := range names {
		s[i] = string(n)
	}
	return strings.Join(s, ", ")
}

// prependNotes puts notes at the top of the report as YAML comments.
func prependNotes(path string, notes []string) error {
	report, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("# Gateway API conformance report of lockstep, written by e2e/gateway/conformance.sh.\n# Notes:\n")
	for _, n := range notes {
		b.WriteString("# - " + n + "\n")
	}
	b.Write(report)
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// summary prints passed/failed/skipped per profile from the report.
func summary(t *testing.T, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("reading %s: %v", path, err)
		return
	}
	var report confv1.ConformanceReport
	if err := yaml.Unmarshal(data, &report); err != nil {
		t.Errorf("parsing %s: %v", path, err)
		return
	}
	if len(report.ProfileReports) == 0 {
		fmt.Println("[conformance] summary: no test ran (the suite's setup failed: see above)")
		return
	}
	sort.Slice(report.ProfileReports, func(i, j int) bool {
		return report.ProfileReports[i].Name < report.ProfileReports[j].Name
	})
	for _, p := range report.ProfileReports {
		line := fmt.Sprintf("[conformance] summary: %s core %s: %d passed, %d failed, %d skipped",
			p.Name, p.Core.Result, p.Core.Passed, p.Core.Failed, p.Core.Skipped)
		if p.Extended != nil {
			line += fmt.Sprintf("; extended %s: %d passed, %d failed, %d skipped",
				p.Extended.Result, p.Extended.Passed, p.Extended.Failed, p.Extended.Skipped)
		}
		fmt.Println(line)
		failed := append([]string{}, p.Core.FailedTests...)
		if p.Extended != nil {
			failed = append(failed, p.Extended.FailedTests...)
		}
		if len(failed) > 0 {
			fmt.Printf("[conformance] summary: %s failed: %s\n", p.Name, strings.Join(failed, " "))
		}
	}
}
