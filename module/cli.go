package module

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/codemie-edge/caddy-webhooks/internal/history"
	"github.com/codemie-edge/caddy-webhooks/internal/integration"
	"github.com/codemie-edge/caddy-webhooks/internal/keyspace"
	"github.com/codemie-edge/caddy-webhooks/internal/mirror"
	"github.com/codemie-edge/caddy-webhooks/internal/redisconn"
	"github.com/codemie-edge/caddy-webhooks/internal/seal"
	"github.com/codemie-edge/caddy-webhooks/internal/store"
	"github.com/codemie-edge/caddy-webhooks/internal/store/redisstore"
	"github.com/codemie-edge/caddy-webhooks/internal/verify"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "codemie-webhooks",
		Usage: "<set|get|list|enable|disable|delete|rotate-secret|import|export|check|sync> [args]",
		Short: "Manages CodeMie webhook integrations in Redis",
		Long: `
Manages the integrations that the codemie_webhooks handler serves, in the
same Redis, under the same key prefix. Every write is validated first,
made in one transaction, and announced on <key_prefix>changed so that every
Caddy instance sees it at once. With a secrets key, secret fields are
stored encrypted (enc:v1:...).

Redis settings come from flags or, when a flag is not given, from the
environment: CODEMIE_WEBHOOKS_REDIS (comma-separated addresses),
CODEMIE_WEBHOOKS_REDIS_USERNAME, CODEMIE_WEBHOOKS_REDIS_PASSWORD,
CODEMIE_WEBHOOKS_KEY and CODEMIE_WEBHOOKS_KEY_PREVIOUS.

Exit status: 0 done, 1 Redis failed, 2 bad input (nothing was written).`,
		CobraFunc: buildCLI,
	})
}

// cliTimeout bounds one command's Redis work.
const cliTimeout = 30 * time.Second

// errBadInput marks errors of the user's input: exit status 2.
type errBadInput struct{ error }

func badInput(format string, args ...any) error {
	return errBadInput{fmt.Errorf(format, args...)}
}

// cli is one run of the command.
type cli struct {
	store *redisstore.Store
	keys  *seal.Keys
	out   io.Writer
	in    io.Reader
	// log is the delivery log under the key prefix.
	log *history.Log
}

// setFlags maps the set verb's flags to record fields.
var setFlags = []struct{ flag, field, help string }{
	{"enabled", integration.FieldIsEnabled, "true or false"},
	{"resource-type", integration.FieldResourceType, strings.Join(integration.ResourceTypes, ", ")},
	{"resource-id", integration.FieldResourceID, "id of the resource to trigger"},
	{"user-id", integration.FieldUserID, "owner; sent as user-id"},
	{"project", integration.FieldProjectName, "project name"},
	{"alias", integration.FieldAlias, "display name"},
	{"github-secret", integration.FieldGitHubWebhookSecret, "GitHub webhook secret (several: one per line)"},
	{"github-require-sha256", integration.FieldGitHubRequireSHA256, "false also accepts X-Hub-Signature: sha1="},
	{"github-event-filter", integration.FieldGitHubEventFilter, "allowed X-GitHub-Event values, comma-separated"},
	{"gitlab-token", integration.FieldGitLabWebhookToken, "expected X-Gitlab-Token"},
	{"gitlab-event-filter", integration.FieldGitLabEventFilter, "allowed merge-request actions, comma-separated"},
	{"secure-header-name", integration.FieldSecureHeaderName, "name of a shared secret header"},
	{"secure-header-value", integration.FieldSecureHeaderValue, "its value"},
	{"signature-scheme", integration.FieldSignatureScheme, strings.Join(integration.Schemes, ", ")},
	{"signature-secret", integration.FieldSignatureSecret, "the scheme's secret (several: one per line)"},
	{"signature-header", integration.FieldSignatureHeader, "hmac-sha256: the signature's header"},
	{"signature-prefix", integration.FieldSignaturePrefix, "hmac-sha256: text before the signature, such as sha256="},
	{"signature-encoding", integration.FieldSignatureEncoding, "hmac-sha256: hex or base64"},
	{"signature-tolerance", integration.FieldSignatureTolerance, "how far a signed timestamp may be from now (default 5m)"},
	{"event-filter", integration.FieldEventFilter, "allowed values of the payload's event field, comma-separated"},
	{"event-field", integration.FieldEventField, "path of the event field, keys separated by dots (default type)"},
	{"graph-validation", integration.FieldGraphValidation, "true: answer Microsoft Graph's validationToken"},
	{"filter", integration.FieldFilter, "CEL expression over event, action, body, headers and webhook; only deliveries for which it is true are taken"},
	{"prompt", integration.FieldPrompt, "what an assistant or workflow is given instead of the body: text with {{body.<path>}}, {{event}}, ... references"},
	{"log-preview", integration.FieldLogPreview, "true: keep a redacted preview of each delivery's body in the delivery log"},
}

func buildCLI(root *cobra.Command) {
	pf := root.PersistentFlags()
	pf.String("redis", "", "Redis addresses, comma-separated (env CODEMIE_WEBHOOKS_REDIS; default 127.0.0.1:6379)")
	pf.String("redis-username", "", "Redis username (env CODEMIE_WEBHOOKS_REDIS_USERNAME)")
	pf.String("redis-password", "", "Redis password (env CODEMIE_WEBHOOKS_REDIS_PASSWORD)")
	pf.Int("redis-db", 0, "Redis database")
	pf.Bool("redis-tls", false, "connect to Redis with TLS")
	pf.Bool("redis-cluster", false, "treat one address as a cluster's entry point")
	pf.String("redis-master-name", "", "Sentinel master name: the addresses are Sentinels")
	pf.String("key-prefix", keyspace.DefaultPrefix, "key prefix")
	pf.String("secrets-key", "", "base64 key that encrypts secrets (env CODEMIE_WEBHOOKS_KEY)")
	pf.String("secrets-key-previous", "", "older base64 key, for reading (env CODEMIE_WEBHOOKS_KEY_PREVIOUS)")

	set := &cobra.Command{Use: "set <id>", Short: "Creates or updates an integration from flags, or a JSON record on stdin (--stdin)",
		Args: cobra.ExactArgs(1), RunE: run((*cli).set)}
	for _, f := range setFlags {
		set.Flags().String(f.flag, "", f.help)
	}
	set.Flags().Bool("stdin", false, "read a JSON record (the integrations file's format) from stdin first")
	get := &cobra.Command{Use: "get <id>", Short: "Prints an integration, secrets masked", Args: cobra.ExactArgs(1), RunE: run((*cli).get)}
	get.Flags().Bool("show-secrets", false, "print secrets in the clear")
	rotate := &cobra.Command{Use: "rotate-secret <id>", Short: "Adds a new secret beside the old one; --finish drops the old",
		Args: cobra.ExactArgs(1), RunE: run((*cli).rotate)}
	rotate.Flags().String("field", "github", "which secret: "+strings.Join(integration.MechanismNames(), ", "))
	rotate.Flags().String("value", "", "the new secret (default: a random one, printed once)")
	rotate.Flags().Bool("finish", false, "keep only the newest secret")
	importCmd := &cobra.Command{Use: "import <file>", Short: "Writes every integration of an integrations file, all valid or none; or of an export of CodeMie's settings (--format codemie)",
		Args: cobra.ExactArgs(1), RunE: run((*cli).importFile)}
	importCmd.Flags().String("format", "edge", "edge: an integrations file; codemie: the settings API's answer or a list of settings rows, imported as sync does")
	importCmd.Flags().Bool("prune", false, "with --format codemie: also delete the integrations synced before that the export does not hold")
	importCmd.Flags().Bool("force", false, "with --prune: allow deleting more than half of them")
	check := &cobra.Command{Use: "check <id>", Short: "Explains what a request must carry to pass an integration; with --payload, what its filter and prompt make of a delivery (nothing is sent)",
		Args: cobra.ExactArgs(1), RunE: run((*cli).check)}
	check.Flags().String("payload", "", "a delivery's body, from this file: shows whether the filter takes it and the prompt it would send")
	check.Flags().String("event", "", "with --payload: the event header's value (X-GitHub-Event, or X-Gitlab-Event for a GitLab integration)")
	root.AddCommand(set, get, rotate, importCmd, syncCommand(), check, tailCommand(),
		&cobra.Command{Use: "list", Short: "Lists integrations", Args: cobra.NoArgs, RunE: run((*cli).list)},
		&cobra.Command{Use: "enable <id>", Short: "Enables an integration", Args: cobra.ExactArgs(1), RunE: run(enabler(true))},
		&cobra.Command{Use: "disable <id>", Short: "Disables an integration", Args: cobra.ExactArgs(1), RunE: run(enabler(false))},
		&cobra.Command{Use: "delete <id>", Short: "Deletes an integration", Args: cobra.ExactArgs(1), RunE: run((*cli).delete)},
		&cobra.Command{Use: "export", Short: "Prints every integration in the integrations file's format (secrets as stored)",
			Args: cobra.NoArgs, RunE: run((*cli).export)},
	)
}

// run adapts a verb to cobra: it connects, runs the verb, and maps its
// error to an exit status.
func run(verb func(*cli, context.Context, caddycmd.Flags, []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		return runWithin(cmd, args, verb, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), cliTimeout)
		})
	}
}

// runWithin runs verb like run, within the context newCtx returns.
func runWithin(cmd *cobra.Command, args []string, verb func(*cli, context.Context, caddycmd.Flags, []string) error,
	newCtx func() (context.Context, context.CancelFunc)) error {
	return caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
		c, closeFn, err := connect(fl)
		if err != nil {
			return exitStatus(err), err
		}
		defer closeFn()
		ctx, cancel := newCtx()
		defer cancel()
		err = verb(c, ctx, fl, args)
		return exitStatus(err), err
	})(cmd, args)
}

func exitStatus(err error) int {
	var bad errBadInput
	switch {
	case err == nil:
		return 0
	case errors.As(err, &bad):
		return 2
	}
	return 1
}

// flagOrEnv is a flag's value, or the environment variable's when the flag
// was not given.
func flagOrEnv(fl caddycmd.Flags, name, env string) string {
	if fl.Changed(name) {
		return fl.String(name)
	}
	return os.Getenv(env)
}

func connect(fl caddycmd.Flags) (*cli, func(), error) {
	cfg := redisconn.Config{
		Username:   flagOrEnv(fl, "redis-username", "CODEMIE_WEBHOOKS_REDIS_USERNAME"),
		Password:   flagOrEnv(fl, "redis-password", "CODEMIE_WEBHOOKS_REDIS_PASSWORD"),
		DB:         fl.Int("redis-db"),
		TLS:        fl.Bool("redis-tls"),
		Cluster:    fl.Bool("redis-cluster"),
		MasterName: fl.String("redis-master-name"),
	}
	if addrs := flagOrEnv(fl, "redis", "CODEMIE_WEBHOOKS_REDIS"); addrs != "" {
		cfg.Addrs = strings.Split(addrs, ",")
	}
	keys, err := seal.ParseKeys(flagOrEnv(fl, "secrets-key", "CODEMIE_WEBHOOKS_KEY"),
		flagOrEnv(fl, "secrets-key-previous", "CODEMIE_WEBHOOKS_KEY_PREVIOUS"))
	if err != nil {
		return nil, nil, errBadInput{err}
	}
	client, err := redisconn.NewClient(cfg)
	if err != nil {
		return nil, nil, errBadInput{err}
	}
	space := keyspace.Space{Prefix: fl.String("key-prefix")}
	c := &cli{store: redisstore.New(client, space, keys, zap.NewNop()), keys: keys, out: os.Stdout, in: os.Stdin,
		log: history.New(client, space.Log(), space.LogUnauthenticated(), history.Limits{})}
	return c, func() { _ = client.Close() }, nil
}

// write validates fields, encrypts plain secrets when a key is configured,
// and stores them.
func (c *cli) write(ctx context.Context, id string, fields map[string]string) error {
	if !integration.ValidID(id) {
		return badInput("webhook id %q: must be 1 to 128 characters of A-Z a-z 0-9 . _ ~ -", id)
	}
	for k, v := range fields {
		if v == "" {
			delete(fields, k)
		}
	}
	fields[integration.FieldWebhookID] = id
	if _, err := integration.DecodeForWrite(id, fields, c.keys); err != nil {
		return errBadInput{err}
	}
	return c.store.Put(ctx, id, integration.SealSecrets(id, fields, c.keys))
}

// existing returns the stored fields of id, which must exist.
func (c *cli) existing(ctx context.Context, id string) (map[string]string, error) {
	fields, err := c.store.Fields(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, badInput("no integration %q", id)
	}
	return fields, err
}

func (c *cli) set(ctx context.Context, fl caddycmd.Flags, args []string) error {
	id := args[0]
	fields, err := c.store.Fields(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		fields, err = map[string]string{}, nil
	}
	if err != nil {
		return err
	}
	if fl.Bool("stdin") {
		data, err := io.ReadAll(c.in)
		if err != nil {
			return err
		}
		records, err := integration.DecodeFileFields([]byte("[" + string(data) + "]"))
		if err != nil {
			return errBadInput{err}
		}
		if len(records) != 1 {
			return badInput("stdin holds %d records, not one", len(records))
		}
		if other := records[0][integration.FieldWebhookID]; other != id {
			return badInput("the record on stdin is for webhook %q, not %q", other, id)
		}
		for k, v := range records[0] {
			fields[k] = v
		}
	}
	for _, f := range setFlags {
		if fl.Changed(f.flag) {
			fields[f.field] = fl.String(f.flag)
		}
	}
	if err := c.write(ctx, id, fields); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "integration %s written\n", id)
	return nil
}

func (c *cli) get(ctx context.Context, fl caddycmd.Flags, args []string) error {
	id := args[0]
	fields, err := c.existing(ctx, id)
	if err != nil {
		return err
	}
	if !fl.Bool("show-secrets") {
		return printJSON(c.out, integration.MaskSecrets(fields))
	}
	if fields, err = integration.OpenSecrets(id, fields, c.keys); err != nil {
		return err
	}
	return printJSON(c.out, fields)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func (c *cli) list(ctx context.Context, _ caddycmd.Flags, _ []string) error {
	ids, err := c.store.IDs(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tALIAS\tPROJECT\tENABLED\tRESOURCE\tMECHANISMS\tPLAIN SECRETS")
	for _, id := range ids {
		fields, err := c.store.Fields(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return err
		}
		sum := integration.Summarise(fields)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s %s\t%s\t%s\n", id, fields[integration.FieldAlias], fields[integration.FieldProjectName],
			sum.Enabled, fields[integration.FieldResourceType], fields[integration.FieldResourceID],
			orNone(strings.Join(sum.Mechanisms, ",")), orNone(strings.Join(sum.PlainSecrets, ",")))
	}
	return tw.Flush()
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func enabler(on bool) func(*cli, context.Context, caddycmd.Flags, []string) error {
	return func(c *cli, ctx context.Context, _ caddycmd.Flags, args []string) error {
		fields, err := c.existing(ctx, args[0])
		if err != nil {
			return err
		}
		fields[integration.FieldIsEnabled] = fmt.Sprint(on)
		if err := c.write(ctx, args[0], fields); err != nil {
			return err
		}
		fmt.Fprintf(c.out, "integration %s enabled: %v\n", args[0], on)
		return nil
	}
}

func (c *cli) delete(ctx context.Context, _ caddycmd.Flags, args []string) error {
	found, err := c.store.Delete(ctx, args[0])
	if err != nil {
		return err
	}
	if !found {
		return badInput("no integration %q", args[0])
	}
	fmt.Fprintf(c.out, "integration %s deleted\n", args[0])
	return nil
}

func (c *cli) rotate(ctx context.Context, fl caddycmd.Flags, args []string) error {
	id := args[0]
	m, ok := integration.MechanismNamed(fl.String("field"))
	if !ok {
		return badInput("--field %q: must be one of %s", fl.String("field"), strings.Join(integration.MechanismNames(), ", "))
	}
	field := m.SecretField
	fields, err := c.existing(ctx, id)
	if err != nil {
		return err
	}
	if fl.Bool("finish") {
		if err := integration.KeepNewestSecret(fields, field); err != nil {
			return badInput("%s of %q: %v", field, id, err)
		}
		if err := c.write(ctx, id, fields); err != nil {
			return err
		}
		fmt.Fprintf(c.out, "integration %s: %s now holds only its newest secret\n", id, field)
		return nil
	}
	secret, generated := fl.String("value"), false
	if secret == "" {
		secret, generated = integration.NewSecret(fields, field), true
	}
	n, err := integration.AddSecret(fields, field, secret)
	if err != nil {
		return badInput("--value: %v", err)
	}
	if err := c.write(ctx, id, fields); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "integration %s: %s holds %d secrets; configure the sender, then run rotate-secret --finish\n", id, field, n)
	if generated {
		fmt.Fprintf(c.out, "new secret (shown once): %s\n", secret)
	}
	return nil
}

func (c *cli) importFile(ctx context.Context, fl caddycmd.Flags, args []string) error {
	switch fl.String("format") {
	case "edge":
	case "codemie":
		return c.importCodeMie(ctx, args[0], fl.Bool("prune"), fl.Bool("force"))
	default:
		return badInput("--format %q: edge or codemie", fl.String("format"))
	}
	data, err := os.ReadFile(args[0])
	if err != nil {
		return errBadInput{err}
	}
	records, err := integration.DecodeFileFields(data)
	if err != nil {
		return errBadInput{err}
	}
	for i, fields := range records {
		if _, err := integration.DecodeForWrite(fields[integration.FieldWebhookID], fields, c.keys); err != nil {
			return badInput("record %d: %v (nothing was written)", i, err)
		}
	}
	for _, fields := range records {
		if err := c.write(ctx, fields[integration.FieldWebhookID], fields); err != nil {
			return err
		}
	}
	fmt.Fprintf(c.out, "%d integrations written\n", len(records))
	return nil
}

func (c *cli) export(ctx context.Context, _ caddycmd.Flags, _ []string) error {
	ids, err := c.store.IDs(ctx)
	if err != nil {
		return err
	}
	records := make([]map[string]any, 0, len(ids))
	for _, id := range ids {
		fields, err := c.store.Fields(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		rec := map[string]any{}
		for k, v := range fields {
			rec[k] = v
			if b, ok := integration.ParseBool(v); ok && (k == integration.FieldIsEnabled || k == integration.FieldGitHubRequireSHA256) {
				rec[k] = b
			}
		}
		records = append(records, rec)
	}
	return printJSON(c.out, records)
}

func (c *cli) check(ctx context.Context, fl caddycmd.Flags, args []string) error {
	fields, err := c.existing(ctx, args[0])
	if err != nil {
		return err
	}
	in, err := integration.Decode(args[0], fields, c.keys)
	if err != nil && fields[mirror.FieldSettingID] != "" && fields[integration.FieldSecureHeaderName] != "" &&
		fields[integration.FieldSecureHeaderValue] == "" {
		return fmt.Errorf("the record needs its secure_header_value, which CodeMie masks; until it is set every request "+
			"to it is answered 500: caddy codemie-webhooks set %s --secure-header-value <value>", args[0])
	}
	if err != nil {
		return fmt.Errorf("the record does not decode, every request to it is answered 500: %v", err)
	}
	if _, err := io.WriteString(c.out, in.Explain(fields[integration.FieldAlias], fields[integration.FieldProjectName])); err != nil {
		return err
	}
	if path := fl.String("payload"); path != "" {
		return c.dryRun(in, path, fl.String("event"))
	}
	return nil
}

// dryRun prints what in's filter and prompt make of the delivery whose
// body is in file path, with event as its event header; nothing is sent.
func (c *cli) dryRun(in *integration.Integration, path, event string) error {
	body, err := os.ReadFile(path)
	if err != nil {
		return errBadInput{err}
	}
	h := http.Header{"Content-Type": {"application/json"}}
	if event != "" {
		name := verify.HeaderGitHubEvent
		if in.GitLab != nil {
			name = verify.HeaderGitLabEvent
		}
		h.Set(name, event)
	}
	vars := verify.ExpressionVars(in, h, body)
	fmt.Fprintf(c.out, "\nWith the payload %s (%d bytes), event %q:\n", path, len(body), vars.Event)
	switch f := in.Filter(); {
	case f == nil:
		fmt.Fprintln(c.out, "  filter: none; taken")
	default:
		switch ok, err := f.Allows(vars); {
		case err != nil:
			fmt.Fprintf(c.out, "  filter: dropped: the expression fails: %v\n", err)
		case ok:
			fmt.Fprintln(c.out, "  filter: taken")
		default:
			fmt.Fprintln(c.out, "  filter: dropped (false)")
		}
	}
	if p := in.Prompt(); p != nil {
		text := p.Render(vars)
		fmt.Fprintf(c.out, "  prompt: %d bytes sent instead of the %d of the body:\n%s\n", len(text), len(body), text)
	} else {
		fmt.Fprintf(c.out, "  prompt: none; the body is sent (%d bytes)\n", len(body))
	}
	return nil
}
