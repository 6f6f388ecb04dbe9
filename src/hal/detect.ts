export interface PlatformReport {
  platform: string | null;
}
export async function detectPlatform(): Promise<PlatformReport> {
  return { platform: null };
}
