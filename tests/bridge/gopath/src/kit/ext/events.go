package ext

// Event structs common to both variants (field names, types and order as in
// KIT). Result structs are the return types of the intercepting handlers.

type ToolCallEvent struct {
	ToolName   string
	ToolCallID string
	ToolKind   string
	Input      string
	ParsedArgs map[string]any
	Source     string
}

type ToolCallResult struct {
	Block  bool
	Reason string
}

type ToolCallInputStartEvent struct {
	ToolCallID string
	ToolName   string
	ToolKind   string
}

type ToolCallInputDeltaEvent struct {
	ToolCallID string
	Delta      string
}

type ToolCallInputEndEvent struct {
	ToolCallID string
}

type ToolExecutionStartEvent struct {
	ToolCallID string
	ToolName   string
	ToolKind   string
}

type ToolExecutionEndEvent struct {
	ToolCallID string
	ToolName   string
	ToolKind   string
}

type ToolOutputEvent struct {
	ToolCallID string
	ToolName   string
	ToolKind   string
	Chunk      string
	IsStderr   bool
}

type ToolResultEvent struct {
	ToolCallID string
	ToolName   string
	ToolKind   string
	Input      string
	Content    string
	IsError    bool
	Metadata   string
}

type ToolResultResult struct {
	Content *string
	IsError *bool
}

type InputEvent struct {
	Text   string
	Source string
}

type InputResult struct {
	Action string
	Text   string
}

type BeforeAgentStartEvent struct {
	Prompt string
}

type BeforeAgentStartResult struct {
	InjectText   *string
	SystemPrompt *string
}

type AgentStartEvent struct {
	Prompt string
}

type AgentEndEvent struct {
	Response              string
	StopReason            string
	ToolCallCount         int
	ToolNames             []string
	LLMCallCount          int
	InputTokensDelta      int
	OutputTokensDelta     int
	CacheReadTokensDelta  int
	CacheWriteTokensDelta int
	CostDelta             float64
	DurationMs            int64
}

type MessageStartEvent struct{}

type MessageUpdateEvent struct {
	Chunk string
}

type MessageEndEvent struct {
	Content string
}

type SessionStartEvent struct {
	SessionID string
}

type SessionShutdownEvent struct{}

type ModelChangeEvent struct {
	NewModel      string
	PreviousModel string
	Source        string
}

type ContextMessage struct {
	Index   int
	Role    string
	Content string
}

type ContextPrepareEvent struct {
	Messages []ContextMessage
}

type ContextPrepareResult struct {
	Messages []ContextMessage
}

type BeforeForkEvent struct {
	TargetID      string
	IsUserMessage bool
	UserText      string
}

type BeforeForkResult struct {
	Cancel bool
	Reason string
}

type BeforeSessionSwitchResult struct {
	Cancel bool
	Reason string
}

type BeforeCompactEvent struct {
	EstimatedTokens int
	ContextLimit    int
	UsagePercent    float64
	MessageCount    int
	IsAutomatic     bool
}

type BeforeCompactResult struct {
	Cancel  bool
	Reason  string
	Summary string
}

type SubagentStartEvent struct {
	ToolCallID string
	Task       string
}

type SubagentChunkEvent struct {
	ToolCallID string
	Task       string
	ChunkType  string
	Content    string
	ToolName   string
	ToolArgs   string
	ToolResult string
	IsError    bool
}

type SubagentEndEvent struct {
	ToolCallID string
	Task       string
	Response   string
	ErrorMsg   string
}

type StepStartEvent struct {
	StepNumber int
}

type StepFinishEvent struct {
	StepNumber       int
	HasToolCalls     bool
	FinishReason     string
	InputTokens      int64
	OutputTokens     int64
	CacheReadTokens  int64
	CacheWriteTokens int64
}

type ReasoningStartEvent struct {
	ID string
}

type WarningsEvent struct {
	Warnings []string
}

type SourceEvent struct {
	SourceType string
	ID         string
	URL        string
	Title      string
}

type ErrorEvent struct {
	Error string
}

type RetryEvent struct {
	Attempt int
	Error   string
}

type PrepareStepEvent struct {
	StepNumber int
	Messages   []ContextMessage
}

type PrepareStepResult struct {
	Messages []ContextMessage
}

type LLMUsageEvent struct {
	InputTokens      int
	OutputTokens     int
	CacheReadTokens  int
	CacheWriteTokens int
	Cost             float64
	Model            string
	Provider         string
	RequestID        string
	StepNumber       int
	FinishReason     string
}

// OptionDef declares an extension option (KIT_OPT_<NAME>, options.<name>).
type OptionDef struct {
	Name        string
	Description string
	Default     string
}

type ToolContext struct {
	IsCancelled func() bool
	OnProgress  func(text string)
}

type ToolDef struct {
	Name               string
	Description        string
	Parameters         string
	Execute            func(input string) (string, error)
	ExecuteWithContext func(input string, tc ToolContext) (string, error)
}

type CommandDef struct {
	Name        string
	Description string
	Execute     func(args string, ctx Context) (string, error)
	Complete    func(prefix string, ctx Context) []string
}
