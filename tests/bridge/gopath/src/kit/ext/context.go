// Package ext is a stand-in for KIT's extension API package ("kit/ext", KIT's
// internal/extensions as exported to Yaegi), written for kit-otel's tests from
// KIT's documented API. Type names, field names and method signatures follow
// KIT; the bodies are test wiring only.
//
// Two variants are selected by build tag:
//
//	kitseed   KIT at commit 49f8b485be (no OnThinkingLevelChange,
//	          OnTerminalResize, OnTurnStateChange; BeforeSessionSwitchEvent
//	          without InitialPrompt)
//	(default) KIT HEAD
//
// The Context below carries every field of KIT's Context so that passing it to
// a handler costs what it costs in KIT. Only the fields the kit-otel bridge
// reads (SessionID, GetSessionPath, GetState, ListState, GetOption) are wired
// by the test driver; the auxiliary types are reduced to their names and a
// few fields.
package ext

// Context is what every handler receives.
type Context struct {
	SessionID   string
	CWD         string
	Model       string
	Interactive bool

	Print                 func(string)
	PrintInfo             func(string)
	PrintError            func(string)
	PrintBlock            func(PrintBlockOpts)
	SendMessage           func(string)
	CancelAndSend         func(string)
	Abort                 func()
	IsIdle                func() bool
	Compact               func(CompactConfig) error
	SendMultimodalMessage func(text string, files []FilePart)
	NewSession            func(prompt string) error
	GetSessionUsage       func() SessionUsage
	SetWidget             func(WidgetConfig)
	RemoveWidget          func(id string)
	SetHeader             func(HeaderFooterConfig)
	RemoveHeader          func()
	SetFooter             func(HeaderFooterConfig)
	RemoveFooter          func()
	PromptSelect          func(PromptSelectConfig) PromptSelectResult
	PromptConfirm         func(PromptConfirmConfig) PromptConfirmResult
	PromptInput           func(PromptInputConfig) PromptInputResult
	PromptMultiSelect     func(PromptMultiSelectConfig) PromptMultiSelectResult
	ShowOverlay           func(OverlayConfig) OverlayResult
	SetEditor             func(EditorConfig)
	ResetEditor           func()
	SetUIVisibility       func(UIVisibility)
	GetContextStats       func() ContextStats
	GetMessages           func() []SessionMessage

	// GetSessionPath is the session JSONL file; "" for in-memory sessions.
	GetSessionPath func() string

	AppendEntry func(entryType string, data string) (string, error)
	GetEntries  func(entryType string) []ExtensionEntry

	// Extension key/value state (the .ext-state.json sidecar).
	SetState    func(key string, value string)
	GetState    func(key string) (string, bool)
	DeleteState func(key string)
	ListState   func() []string

	SetEditorText func(text string)
	SetStatus     func(key string, text string, priority int)
	RemoveStatus  func(key string)

	// GetOption resolves a registered option: runtime override, then
	// KIT_OPT_<NAME>, then options.<name> in .kit.yml, then the default.
	GetOption func(name string) string
	SetOption func(name string, value string)

	SetModel                    func(modelString string) error
	GetAvailableModels          func() []ModelInfoEntry
	EmitCustomEvent             func(name string, data string)
	GetAllTools                 func() []ToolInfo
	SetActiveTools              func(names []string)
	Exit                        func()
	Complete                    func(CompleteRequest) (CompleteResponse, error)
	SuspendTUI                  func(callback func()) error
	RenderMessage               func(rendererName string, content string)
	RegisterTheme               func(name string, config ThemeColorConfig)
	SetTheme                    func(name string) error
	ListThemes                  func() []string
	GetTheme                    func() ThemeColors
	ReloadExtensions            func() error
	SpawnSubagent               func(SubagentConfig) (*SubagentHandle, *SubagentResult, error)
	GetTreeNode                 func(entryID string) *TreeNode
	GetCurrentBranch            func() []TreeNode
	GetChildren                 func(entryID string) []string
	NavigateTo                  func(entryID string) TreeNavigationResult
	SummarizeBranch             func(fromID, toID string) string
	CollapseBranch              func(fromID, toID, summary string) TreeNavigationResult
	LoadSkill                   func(path string) (*Skill, string)
	LoadSkillsFromDir           func(dir string) SkillLoadResult
	DiscoverSkills              func() SkillLoadResult
	InjectSkillAsContext        func(skillName string) string
	InjectRawSkillAsContext     func(path string) string
	GetAvailableSkills          func() []Skill
	ParseTemplate               func(name, content string) PromptTemplate
	RenderTemplate              func(tpl PromptTemplate, vars map[string]string) string
	ParseArguments              func(input string, pattern ArgumentPattern) ParseResult
	SimpleParseArguments        func(input string, count int) []string
	EvaluateModelConditional    func(condition string) bool
	RenderWithModelConditionals func(content string) string
	ResolveModelChain           func(preferences []string) ModelResolutionResult
	GetModelCapabilities        func(model string) (ModelCapabilities, string)
	CheckModelAvailable         func(model string) bool
	GetCurrentProvider          func() string
	GetCurrentModelID           func() string
	GetTerminalSize             func() (int, int)
	GetThinkingLevel            func() string
}

// Auxiliary types named by Context (reduced: the bridge never touches them).

type PrintBlockOpts struct {
	Text        string
	BorderColor string
	Subtitle    string
}

type CompactConfig struct {
	CustomInstructions string
	OnComplete         func()
	OnError            func(errMsg string)
}

type FilePart struct {
	Filename  string
	Data      []byte
	MediaType string
}

type SessionUsage struct {
	TotalInputTokens      int
	TotalOutputTokens     int
	TotalCacheReadTokens  int
	TotalCacheWriteTokens int
	TotalCost             float64
	RequestCount          int
	IsOAuth               bool
}

type SessionMessage struct {
	ID        string
	ParentID  string
	Role      string
	Content   string
	Model     string
	Provider  string
	Timestamp string
}

type ExtensionEntry struct {
	ID        string
	EntryType string
	Data      string
	Timestamp string
}

type WidgetConfig struct{ ID string }
type HeaderFooterConfig struct{ Render func(width int) string }
type PromptSelectConfig struct{ Message string }
type PromptSelectResult struct {
	Value     string
	Cancelled bool
}
type PromptConfirmConfig struct{ Message string }
type PromptConfirmResult struct {
	Value     bool
	Cancelled bool
}
type PromptInputConfig struct{ Message string }
type PromptInputResult struct {
	Value     string
	Cancelled bool
}
type PromptMultiSelectConfig struct{ Message string }
type PromptMultiSelectResult struct {
	Values    []string
	Cancelled bool
}
type OverlayConfig struct{ Title string }
type OverlayResult struct {
	Action    string
	Cancelled bool
}
type EditorConfig struct {
	Render func(width int, defaultContent string) string
}
type UIVisibility struct{ HideStatusBar bool }
type ContextStats struct {
	EstimatedTokens int
	ContextLimit    int
	UsagePercent    float64
	MessageCount    int
}
type ModelInfoEntry struct{ Provider, ModelID string }
type ToolInfo struct {
	Name    string
	Enabled bool
}
type CompleteRequest struct{ Model, Prompt, System string }
type CompleteResponse struct{ Text string }
type ThemeColorConfig struct{ Name string }
type ThemeColors struct{ Name string }
type SubagentConfig struct{ Prompt string }
type SubagentHandle struct{ ID string }
type SubagentResult struct{ Response string }
type TreeNode struct{ ID, ParentID string }
type TreeNavigationResult struct {
	Success bool
	Error   string
}
type Skill struct{ Name, Path string }
type SkillLoadResult struct{ Error string }
type PromptTemplate struct{ Name, Content string }
type ArgumentPattern struct{ Rest string }
type ParseResult struct{ Rest, Error string }
type ModelResolutionResult struct{ Model, Error string }
type ModelCapabilities struct {
	Provider     string
	ModelID      string
	ContextLimit int
}
