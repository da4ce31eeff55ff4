// Types of core/bundle.mjs (plain JavaScript: runner/launch.mjs loads it before any TypeScript).
/** The path of build/cli/NAME.mjs, a bundle of ENTRY, built first when a source is newer than it. */
export declare function freshBundle(name: string, entry: string): Promise<string>;
